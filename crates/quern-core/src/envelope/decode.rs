//! Decoding envelopes and payloads, with diagnostics that say what was wrong and where.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Envelope;

/// Bytes of context shown on each side of a decode error.
const WINDOW: usize = 40;

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
    pub(super) fn without_position(kind: DecodeErrorKind, message: String) -> Self {
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
pub(super) fn window(bytes: &[u8], offset: usize) -> String {
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
