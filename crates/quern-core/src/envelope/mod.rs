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
//!
//! # Layout
//! - `id` — [`JobId`].
//! - `decode` — [`decode_envelope`], [`decode_payload`] and [`DecodeError`].
//! - here — the [`Envelope`] itself, [`Failure`], and encoding new envelopes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod decode;
mod id;

use decode::window;
pub use decode::{DecodeError, DecodeErrorKind, decode_envelope, decode_payload};
use id::non_empty_id;
pub use id::{InvalidJobId, JobId, MAX_CALLER_ID_BYTES};

/// Headers carried beside the payload (trace context, say): names and values as text.
pub type Headers = BTreeMap<String, String>;

/// Default limit on a payload's size: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

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
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Envelope<'a> {
    /// The job id, stable across retries. Left out of a new job's envelope: the worker then uses
    /// [`JobId::for_entry`] (the queue and the entry it was stored as), and writes it explicitly
    /// once the job moves (a retry, a delay, a lease expiry).
    #[serde(default = "JobId::unset", deserialize_with = "non_empty_id")]
    pub id: JobId,
    /// The job's registered name.
    pub job: String,
    /// The queue it was enqueued to. Optional and informational: the stream it is in decides.
    #[serde(default)]
    pub queue: String,
    /// The attempt this copy is for, 1-based. Optional on the wire (default 1).
    #[serde(default = "one")]
    pub attempt: u32,
    /// When the job was first enqueued, in ms since the Unix epoch. Optional: when absent, the
    /// time part of the stream entry id (the moment it was added) is used.
    #[serde(default)]
    pub enqueued_at: Option<u64>,
    /// Overrides the job type's attempt budget for this job only.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Headers set at enqueue (trace context, say), never part of the payload.
    #[serde(default)]
    pub headers: Headers,
    /// The most recent failed attempts, newest last (at most three are kept).
    #[serde(default)]
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
            headers: Headers::new(),
            failures: Vec::new(),
            payload,
        }
    }

    /// The fields before the payload, as they are written.
    fn head(&self) -> Head<'_> {
        Head {
            id: self.id.as_str(),
            job: &self.job,
            queue: &self.queue,
            attempt: self.attempt,
            enqueued_at: self.enqueued_at,
            max_attempts: self.max_attempts,
            headers: &self.headers,
            failures: &self.failures,
        }
    }

    /// The JSON text of this envelope.
    pub fn encode(&self) -> String {
        // Sized once: the payload plus room for the id, the name and the other fields.
        let mut out = Vec::with_capacity(self.payload.get().len() + self.job.len() + 96);
        self.head().write(&mut out);
        out.extend_from_slice(self.payload.get().as_bytes());
        out.push(b'}');
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

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The one encoding ([`Envelope::encode`]), handed over as raw JSON.
        let text = RawValue::from_string(self.encode()).map_err(serde::ser::Error::custom)?;
        text.serialize(s)
    }
}

/// Every field of an envelope but the payload, and when each is left out: the one place the
/// wire form is written ([`Envelope::encode`] and [`encode_new`] both go through it).
#[derive(Serialize)]
struct Head<'e> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'e str,
    job: &'e str,
    #[serde(skip_serializing_if = "str::is_empty")]
    queue: &'e str,
    #[serde(skip_serializing_if = "is_one")]
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    enqueued_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'e Headers,
    #[serde(skip_serializing_if = "<[Failure]>::is_empty")]
    failures: &'e [Failure],
}

impl Head<'_> {
    /// Writes `{<fields>,"payload":` into `out`: the caller writes the payload and the `}`.
    fn write(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("an envelope's fields always serialize");
        // `job` is always written, so the object is never empty: drop its `}` and go on.
        out.pop();
        out.extend_from_slice(b",\"payload\":");
    }
}

/// What a new job's first-attempt envelope carries besides its payload.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct NewEnvelope<'a> {
    /// Its id; unset (the common case) writes none, and the stream entry's id stands for it.
    pub id: &'a JobId,
    /// The job's registered name.
    pub job: &'a str,
    /// An attempt budget for this job only.
    pub max_attempts: Option<u32>,
    /// Headers (trace context, say).
    pub headers: &'a Headers,
}

impl<'a> NewEnvelope<'a> {
    /// A new envelope of job `job` with id `id` and nothing else.
    pub fn new(id: &'a JobId, job: &'a str, headers: &'a Headers) -> Self {
        Self {
            id,
            job,
            max_attempts: None,
            headers,
        }
    }

    /// Sets the attempt budget for this job only.
    #[must_use]
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }
}

/// The stored text of a new job's first-attempt envelope: the same bytes as the
/// [`Envelope`] with these fields and `encode_payload(payload, limit)?` would
/// [`encode`](Envelope::encode) to, written in one pass into one buffer. Refuses payloads over
/// `limit` bytes.
pub fn encode_new<T: Serialize + ?Sized>(
    new: &NewEnvelope<'_>,
    payload: &T,
    limit: usize,
) -> Result<String, DecodeError> {
    let mut out = Vec::with_capacity(80 + new.job.len());
    let no_failures: &[Failure] = &[];
    Head {
        id: new.id.as_str(),
        job: new.job,
        queue: "",
        attempt: 1,
        enqueued_at: None,
        max_attempts: new.max_attempts,
        headers: new.headers,
        failures: no_failures,
    }
    .write(&mut out);
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

#[cfg(test)]
mod tests;
