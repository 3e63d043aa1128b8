//! The wire envelope, job ids, and payload decoding with precise diagnostics.
//!
//! An envelope is one JSON object (see `docs/wire-format.md`):
//!
//! ```json
//! {"id":"06F9QZ0VJ3T8A2M4N5P6Q7R8S9","job":"send_email","payload":{"to":"a@example.com"}}
//! ```
//!
//! Decoding never panics and never loses the bytes: a failure is a [`DecodeError`] that says what
//! was wrong and where (field path, line, column, byte offset, the text around it, the size).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Default limit on a payload's size: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Bytes of context shown on each side of a decode error.
const WINDOW: usize = 40;

/// A job's id: stable across retries, unique per enqueue.
///
/// Quern generates 26-character, time-ordered ids (a UUIDv7's 128 bits in Crockford base32, as
/// ULIDs are written); producers in other languages may use any non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A new, unique, time-ordered id.
    pub fn new() -> Self {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let bits = uuid_v7_bits();
        let mut text = String::with_capacity(26);
        for i in (0..26).rev() {
            text.push(char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]));
        }
        JobId(text)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a job that carries none in its envelope: its queue and the broker's entry id
    /// (`emails/1733079705123-0`). Such an id says where the job was first stored, so finding
    /// it needs no index.
    pub fn for_entry(queue: &str, entry_id: &str) -> Self {
        let mut s = String::with_capacity(queue.len() + 1 + entry_id.len());
        s.push_str(queue);
        s.push('/');
        s.push_str(entry_id);
        JobId(s)
    }

    /// The `(queue, entry id)` an id made by [`for_entry`](Self::for_entry) names (split at
    /// its last `/`); `None` for other ids.
    pub fn entry(&self) -> Option<(&str, &str)> {
        self.0
            .rsplit_once('/')
            .filter(|(q, e)| !q.is_empty() && !e.is_empty())
    }

    /// No id: what an envelope without one decodes to.
    fn unset() -> Self {
        JobId(String::new())
    }

    /// An envelope's id when it carries none (the entry's id stands for it).
    pub fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes an envelope's `id`: any non-empty string (`docs/wire-format.md`).
fn non_empty_id<'de, D: serde::Deserializer<'de>>(de: D) -> Result<JobId, D::Error> {
    let id = String::deserialize(de)?;
    if id.is_empty() {
        return Err(serde::de::Error::custom(
            "the job id is empty: leave `id` out (the stream entry id stands for it) or give a non-empty string",
        ));
    }
    Ok(JobId(id))
}

/// A UUIDv7 (RFC 9562) as a number: 48 bits of Unix ms, the version, a 12-bit counter that keeps
/// the ids one thread makes in one millisecond in order (it starts at a random value below 2048
/// each millisecond; when it runs out, the time part moves on by one ms), the variant, and 62
/// random bits. Per thread, so making an id takes no lock.
fn uuid_v7_bits() -> u128 {
    use std::cell::Cell;
    thread_local! {
        /// (ms, counter) of the last id this thread made.
        static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (ms, counter) = LAST.with(|last| {
        let (last_ms, last_counter) = last.get();
        let next = if now > last_ms {
            (now, rand::random::<u64>() & 0x7FF)
        } else if last_counter < 0xFFF {
            (last_ms, last_counter + 1)
        } else {
            (last_ms + 1, rand::random::<u64>() & 0x7FF)
        };
        last.set(next);
        next
    });
    let random = rand::random::<u64>() & ((1 << 62) - 1);
    (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7 << 76)
        | (u128::from(counter) << 64)
        | (0b10 << 62)
        | u128::from(random)
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<String> for JobId {
    fn from(s: String) -> Self {
        JobId(s)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        JobId(s.to_owned())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// One failed attempt, as stored with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The attempt that failed.
    pub attempt: u32,
    /// When it failed, in milliseconds since the Unix epoch.
    pub at: u64,
    /// `error`, `panic`, `timeout`, `lost` (the worker went away), `decode`, `unknown_job`,
    /// `resource`.
    pub kind: String,
    /// The error's message and each cause, outermost first.
    pub chain: Vec<String>,
}

impl Failure {
    /// A failure of `kind` at `attempt`, now.
    pub fn new(attempt: u32, kind: impl Into<String>, chain: Vec<String>) -> Self {
        Self {
            attempt,
            at: now_ms(),
            kind: kind.into(),
            chain,
        }
    }
}

/// The message that travels through Redis for every job.
///
/// The payload is kept as raw JSON text: the worker forwards it without re-encoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope<'a> {
    /// The job id, stable across retries. Left out of a new job's envelope: the worker then uses
    /// [`JobId::for_entry`] (the queue and the entry it was stored as), and writes it explicitly
    /// once the job moves (a retry, a delay, a lease expiry).
    #[serde(
        default = "JobId::unset",
        skip_serializing_if = "JobId::is_unset",
        deserialize_with = "non_empty_id"
    )]
    pub id: JobId,
    /// The job's registered name.
    pub job: String,
    /// The queue it was enqueued to. Optional and informational: the stream it is in decides.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// The attempt this copy is for, 1-based. Optional on the wire (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub attempt: u32,
    /// When the job was first enqueued, in ms since the Unix epoch. Optional: when absent, the
    /// time part of the stream entry id (the moment it was added) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<u64>,
    /// Overrides the job type's attempt budget for this job only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The most recent failed attempts, newest last (at most three are kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// The job's own fields, as JSON.
    #[serde(borrow)]
    pub payload: &'a RawValue,
}

impl<'a> Envelope<'a> {
    /// A first-attempt envelope for `payload`, with a new id. It carries neither queue nor
    /// enqueue time: the stream and the stream entry id say both, and every byte is stored once
    /// per pending job.
    pub fn new(job: impl Into<String>, payload: &'a RawValue) -> Self {
        Self::with_id(JobId::new(), job, payload)
    }

    /// A first-attempt envelope with the given id ([`JobId::default`]-like unset id: none
    /// written).
    pub fn with_id(id: JobId, job: impl Into<String>, payload: &'a RawValue) -> Self {
        Self {
            id,
            job: job.into(),
            queue: String::new(),
            attempt: 1,
            enqueued_at: None,
            max_attempts: None,
            failures: Vec::new(),
            payload,
        }
    }

    /// The JSON text of this envelope.
    pub fn encode(&self) -> String {
        // Sized once: the payload plus room for the id, the name and the other fields.
        let mut out = Vec::with_capacity(self.payload.get().len() + self.job.len() + 96);
        serde_json::to_writer(&mut out, self).expect("an envelope always serializes");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The envelope for the next attempt, recording `failure` (the last three are kept).
    pub fn next_attempt(&self, failure: Failure) -> Envelope<'a> {
        let mut next = self.clone();
        next.attempt = failure.attempt.saturating_add(1);
        next.failures.push(failure);
        let excess = next.failures.len().saturating_sub(3);
        next.failures.drain(..excess);
        next
    }

    /// When the job was first enqueued: `enqueued_at`, else `fallback_ms` (the stream entry's time).
    pub fn enqueued_time(&self, fallback_ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.enqueued_at.unwrap_or(fallback_ms))
    }
}

/// The stored text of a new job's first-attempt envelope: the same bytes as
/// `Envelope::with_id(id, job, &encode_payload(payload, limit)?).encode()`, written in one pass
/// into one buffer. With `id` unset (the common case) no id is written: the entry's id stands
/// for it. Refuses payloads over `limit` bytes.
pub fn encode_new<T: Serialize + ?Sized>(
    id: &JobId,
    job: &str,
    payload: &T,
    limit: usize,
) -> Result<String, DecodeError> {
    let mut out = Vec::with_capacity(80 + job.len());
    if id.is_unset() {
        out.extend_from_slice(b"{\"job\":");
    } else {
        out.extend_from_slice(b"{\"id\":");
        serde_json::to_writer(&mut out, id.as_str()).expect("a string always serializes");
        out.extend_from_slice(b",\"job\":");
    }
    serde_json::to_writer(&mut out, job).expect("a string always serializes");
    out.extend_from_slice(b",\"payload\":");
    let start = out.len();
    serde_json::to_writer(&mut out, payload).map_err(serialize_error)?;
    check_size(&out[start..], limit)?;
    out.push(b'}');
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

fn serialize_error(e: serde_json::Error) -> DecodeError {
    DecodeError::without_position(
        DecodeErrorKind::Data,
        format!("the job could not be serialized to JSON: {e}"),
    )
}

/// Serializes a job's fields to the raw JSON payload, refusing payloads over `limit` bytes.
pub fn encode_payload<T: Serialize>(job: &T, limit: usize) -> Result<Box<RawValue>, DecodeError> {
    let raw = serde_json::value::to_raw_value(job).map_err(serialize_error)?;
    check_size(raw.get().as_bytes(), limit)?;
    Ok(raw)
}

/// Refuses `bytes` if larger than `limit`.
pub fn check_size(bytes: &[u8], limit: usize) -> Result<(), DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError {
            kind: DecodeErrorKind::TooLarge,
            message: format!(
                "payload is {} bytes, over the limit of {limit} bytes",
                bytes.len()
            ),
            path: None,
            line: 0,
            column: 0,
            offset: limit,
            window: window(bytes, limit),
            size: bytes.len(),
        });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What kind of decoding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The bytes are not valid UTF-8.
    Utf8,
    /// Not JSON: a syntax error.
    Syntax,
    /// JSON that ends too early (truncated).
    Eof,
    /// Valid JSON of the wrong shape: a wrong type, a missing field, an unknown variant.
    Data,
    /// Not a Quern envelope at all.
    Envelope,
    /// Larger than the configured limit.
    TooLarge,
}

/// A payload or envelope that could not be decoded, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub struct DecodeError {
    /// What kind of failure.
    pub kind: DecodeErrorKind,
    /// The decoder's message, without position.
    pub message: String,
    /// The field path (`pages[3].title`), when the failure is inside a value.
    pub path: Option<String>,
    /// 1-based line of the error (0 when not applicable).
    pub line: usize,
    /// 1-based column of the error (0 when not applicable).
    pub column: usize,
    /// Byte offset of the error.
    pub offset: usize,
    /// About 40 bytes each side of the error, control characters escaped, with `<<HERE>>` at the
    /// position.
    pub window: String,
    /// Total size of the decoded text, in bytes.
    pub size: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{p}: ")?;
        }
        write!(f, "{}", self.message)?;
        if self.line > 0 {
            write!(f, " at line {} column {}", self.line, self.column)?;
        }
        write!(f, " (byte {} of {})", self.offset, self.size)?;
        if !self.window.is_empty() {
            write!(f, ": {}", self.window)?;
        }
        Ok(())
    }
}

impl DecodeError {
    /// A stream entry without the `e` field that holds the envelope.
    pub fn missing_field_e() -> Self {
        Self::without_position(
            DecodeErrorKind::Envelope,
            "the stream entry has no `e` field holding an envelope (not written by a Quern \
             producer? see docs/wire-format.md)"
                .into(),
        )
    }

    /// A stream entry whose `e` field is there but empty.
    pub fn empty_field_e() -> Self {
        Self::without_position(
            DecodeErrorKind::Envelope,
            "the stream entry's `e` field is empty: it must hold the envelope JSON (see docs/wire-format.md)"
                .into(),
        )
    }

    /// An error about the whole input, not a place in it.
    fn without_position(kind: DecodeErrorKind, message: String) -> Self {
        DecodeError {
            kind,
            message,
            path: None,
            line: 0,
            column: 0,
            offset: 0,
            window: String::new(),
            size: 0,
        }
    }
}

/// Decodes an envelope from the bytes stored in Redis.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let text = utf8(bytes)?;
    let start = text.len() - text.trim_start().len();
    if !text[start..].starts_with('{') {
        let first = text[start..].chars().next().map_or(0, char::len_utf8);
        let mut found = String::new();
        escape_into(&mut found, &bytes[start..start + first]);
        return Err(DecodeError {
            kind: DecodeErrorKind::Envelope,
            message: if found.is_empty() {
                "empty: expected a JSON object (a Quern envelope)".to_owned()
            } else {
                format!("not a Quern envelope: expected a JSON object, found `{found}`")
            },
            path: None,
            line: 1 + text[..start].matches('\n').count(),
            column: start - text[..start].rfind('\n').map_or(0, |p| p + 1) + 1,
            offset: start,
            window: window(bytes, start),
            size: bytes.len(),
        });
    }
    // The fast path decodes without tracking the field path; only a failure decodes again, with
    // the path, to say where it went wrong (the same input fails at the same place).
    if let Ok(env) = serde_json::from_str::<Envelope<'_>>(text) {
        return Ok(env);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let env: Envelope<'_> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| from_json_error(text, with_path(e), DecodeErrorKind::Envelope))?;
    de.end()
        .map_err(|e| from_json_error(text, path_less(e), DecodeErrorKind::Envelope))?;
    Ok(env)
}

/// Decodes a job's fields from its raw JSON payload.
pub fn decode_payload<T: DeserializeOwned>(payload: &str) -> Result<T, DecodeError> {
    // Fast path first; the path-tracking decode runs only to describe a failure.
    if let Ok(value) = serde_json::from_str::<T>(payload) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(payload);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| from_json_error(payload, with_path(e), DecodeErrorKind::Data))?;
    de.end()
        .map_err(|e| from_json_error(payload, path_less(e), DecodeErrorKind::Data))?;
    Ok(value)
}

fn with_path(e: serde_path_to_error::Error<serde_json::Error>) -> (String, serde_json::Error) {
    (e.path().to_string(), e.into_inner())
}

fn path_less(e: serde_json::Error) -> (String, serde_json::Error) {
    (String::new(), e)
}

fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let before = &bytes[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        DecodeError {
            kind: DecodeErrorKind::Utf8,
            message: format!(
                "invalid UTF-8: byte 0x{:02x} cannot start or continue a character",
                bytes[offset]
            ),
            path: None,
            line,
            column: offset - line_start + 1,
            offset,
            window: window(bytes, offset),
            size: bytes.len(),
        }
    })
}

fn from_json_error(
    text: &str,
    (path, inner): (String, serde_json::Error),
    data_kind: DecodeErrorKind,
) -> DecodeError {
    let kind = match inner.classify() {
        serde_json::error::Category::Syntax => DecodeErrorKind::Syntax,
        serde_json::error::Category::Eof => DecodeErrorKind::Eof,
        serde_json::error::Category::Io | serde_json::error::Category::Data => data_kind,
    };
    let (line, column) = (inner.line(), inner.column());
    // At end of input serde_json points at the last byte read; the fault is just past it.
    let offset = if kind == DecodeErrorKind::Eof {
        text.len()
    } else {
        offset_of(text, line, column)
    };
    // serde_json appends " at line L column C"; we report the position in fields of our own.
    let mut message = inner.to_string();
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    if kind == DecodeErrorKind::Eof {
        message = format!("{message} (the JSON is truncated)");
    }
    DecodeError {
        kind,
        message,
        path: (!path.is_empty() && path != ".").then_some(path),
        line,
        column,
        offset,
        window: window(text.as_bytes(), offset),
        size: text.len(),
    }
}

/// Byte offset of 1-based (line, column); serde_json counts columns in bytes.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    if line == 0 {
        return 0;
    }
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(p) => start += p + 1,
            None => return text.len(),
        }
    }
    // serde_json reports the column of the last byte read (1-based), or 0 at a line start.
    (start + column.saturating_sub(1)).min(text.len())
}

/// `...text before<<HERE>>text after...`, control characters and invalid bytes escaped.
fn window(bytes: &[u8], offset: usize) -> String {
    let offset = offset.min(bytes.len());
    let start = offset.saturating_sub(WINDOW);
    let end = (offset + WINDOW).min(bytes.len());
    let mut out = String::new();
    if start > 0 {
        out.push_str("...");
    }
    escape_into(&mut out, &bytes[start..offset]);
    out.push_str("<<HERE>>");
    escape_into(&mut out, &bytes[offset..end]);
    if end < bytes.len() {
        out.push_str("...");
    }
    out
}

/// Characters that print as nothing or move the text around: control characters, the byte-order
/// mark, zero-width and direction marks. Shown escaped, so a diagnostic shows what is there.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{feff}' | '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}')
}

fn escape_into(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if is_invisible(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Page {
        title: String,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Site {
        id: u64,
        pages: Vec<Page>,
    }

    #[test]
    fn wrong_type_reports_field_path_and_position() {
        let text = r#"{"id":1,"pages":[{"title":"a"},{"title":"b"},{"title":"c"},{"title":7}]}"#;
        let err = decode_payload::<Site>(text).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Data);
        assert_eq!(err.path.as_deref(), Some("pages[3].title"));
        assert_eq!(err.message, "invalid type: integer `7`, expected a string");
        assert_eq!(err.line, 1);
        assert_eq!(err.size, text.len());
        assert_eq!(&text[err.offset..err.offset + 1], "7");
        assert!(err.window.contains(r#"{"title":<<HERE>>7}]}"#), "{}", err.window);
        let shown = err.to_string();
        assert!(
            shown
                .starts_with("pages[3].title: invalid type: integer `7`, expected a string at line 1 column"),
            "{shown}"
        );
    }

    #[test]
    fn syntax_error_has_window_and_escapes_control_characters() {
        let text = "{\"id\":1,\n\"pages\": [}\u{1}";
        let err = decode_payload::<Site>(text).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Syntax);
        assert_eq!(err.line, 2);
        assert!(
            err.window.contains("\\n\"pages\": [<<HERE>>}\\u{1}"),
            "{}",
            err.window
        );
    }

    #[test]
    fn truncated_json_is_eof() {
        let err = decode_payload::<Site>(r#"{"id":1,"pages":[{"ti"#).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Eof);
        assert!(err.message.contains("truncated"), "{}", err.message);
        assert!(err.window.ends_with("<<HERE>>"), "{}", err.window);
    }

    #[test]
    fn missing_field_is_reported() {
        let err = decode_payload::<Site>(r#"{"id":1}"#).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Data);
        assert_eq!(err.message, "missing field `pages`");
    }

    #[test]
    fn invalid_utf8_names_the_byte() {
        let mut bytes = br#"{"id":"x","job":"a","payload":{"t":""#.to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(br#""}}"#);
        let err = decode_envelope(&bytes).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Utf8);
        assert_eq!(err.offset, bytes.len() - 4);
        assert!(err.window.contains("<<HERE>>\\xff"), "{}", err.window);
    }

    #[test]
    fn non_envelope_is_refused() {
        let err = decode_envelope(br#"[1,2,3]"#).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Envelope);
        let err = decode_envelope(br#"{"id":"x","payload":{}}"#).unwrap_err();
        assert_eq!(err.message, "missing field `job`");
    }

    #[test]
    fn long_text_is_windowed() {
        let text = format!(
            r#"{{"id":1,"pages":[{{"title":"{}"}},{{"title":false}}]}}"#,
            "x".repeat(200)
        );
        let err = decode_payload::<Site>(&text).unwrap_err();
        assert!(
            err.window.starts_with("...") && err.window.len() < 100,
            "{}",
            err.window
        );
    }

    #[test]
    fn envelope_round_trips_and_keeps_payload_text() {
        let raw = encode_payload(&Site { id: 3, pages: vec![] }, MAX_PAYLOAD_BYTES).unwrap();
        let env = Envelope::new("site", &raw);
        let text = env.encode();
        let back = decode_envelope(text.as_bytes()).unwrap();
        assert_eq!(back.payload.get(), r#"{"id":3,"pages":[]}"#);
        assert_eq!(back.attempt, 1);
        assert_eq!(
            text,
            format!(
                r#"{{"id":"{}","job":"site","payload":{{"id":3,"pages":[]}}}}"#,
                env.id
            )
        );
        assert_eq!(env.id.as_str().len(), 26);
        assert!(JobId::new() > env.id, "ids are time-ordered");
        let next = back.next_attempt(Failure::new(1, "error", vec!["boom".into()]));
        assert_eq!(next.attempt, 2);
        assert_eq!(next.failures.len(), 1);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let err = encode_payload(&"x".repeat(100), 50).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TooLarge);
        assert!(err.to_string().contains("over the limit of 50 bytes"), "{err}");
    }

    #[test]
    fn ids_are_uuid_v7_and_ordered_within_a_thread() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let first = uuid_v7_bits();
        assert_eq!((first >> 76) & 0xF, 7, "version 7");
        assert_eq!((first >> 62) & 0b11, 0b10, "RFC 9562 variant");
        let ms = (first >> 80) as u64;
        assert!(ms.abs_diff(now) < 5_000, "{ms} vs {now}");
        let ids: Vec<JobId> = (0..20_000).map(|_| JobId::new()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing, even within one ms"
        );
        assert!(ids.iter().all(|id| id.as_str().len() == 26));
    }

    #[test]
    fn encode_new_writes_what_the_envelope_would() {
        #[derive(Serialize)]
        struct Page {
            title: &'static str,
            n: u64,
        }
        let page = Page {
            title: "a \"quoted\" title\n",
            n: 7,
        };
        let payload = encode_payload(&page, MAX_PAYLOAD_BYTES).unwrap();
        for id in [JobId::from(""), JobId::new()] {
            let text = encode_new(&id, "site\"gen", &page, MAX_PAYLOAD_BYTES).unwrap();
            let env = Envelope::with_id(id.clone(), "site\"gen", &payload);
            assert_eq!(text, env.encode());
            assert_eq!(
                text.contains("\"id\""),
                !id.is_unset(),
                "an unset id is not written"
            );
            let back = decode_envelope(text.as_bytes()).unwrap();
            assert_eq!((back.id, back.job.as_str()), (id, "site\"gen"));
        }
        let err = encode_new(&JobId::from(""), "big", &"x".repeat(100), 50).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TooLarge);
    }

    #[test]
    fn an_empty_id_is_refused_and_a_missing_one_is_unset() {
        let err = decode_envelope(br#"{"id":"","job":"j","payload":{}}"#).unwrap_err();
        assert!(err.to_string().contains("the job id is empty"), "{err}");
        assert_eq!(err.path.as_deref(), Some("id"));
        let env = decode_envelope(br#"{"job":"j","payload":{}}"#).unwrap();
        assert!(env.id.is_unset());
        let id = JobId::for_entry("a/b", "1700000000000-3");
        assert_eq!(id.as_str(), "a/b/1700000000000-3");
        assert_eq!(id.entry(), Some(("a/b", "1700000000000-3")));
        assert_eq!(JobId::new().entry(), None);
    }

    #[test]
    fn invisible_characters_are_escaped_in_diagnostics() {
        let err = decode_envelope("\u{feff}{\"job\":1}".as_bytes()).unwrap_err();
        assert!(err.message.contains("\\u{feff}"), "{}", err.message);
        assert!(
            !err.message.contains('\u{feff}') && !err.window.contains('\u{feff}'),
            "{err:?}"
        );
        let err = decode_payload::<u32>("\u{200b}7").unwrap_err();
        assert!(
            err.window.contains("\\u{200b}") && !err.window.contains('\u{200b}'),
            "{err:?}"
        );
    }
}
