//! [`Delivery`]: one stream entry as a worker receives it, whichever parser read the reply.
//!
//! An entry's fields: `e` (the envelope), `r` (how many times its lease expired), `i` (the job
//! id, written when the job moved here from another entry). Anything else is kept, as JSON, for
//! the dead record of an entry that was not written by Quern.

use quern_core::Delivery;
use redis::Value;

use crate::error::StorageError;

pub(crate) fn parse_read(reply: Value) -> Result<Vec<Delivery>, StorageError> {
    let bad = |detail: &str| StorageError::Protocol {
        context: "reading jobs",
        detail: detail.to_owned(),
    };
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        Value::Map(m) => m.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        other => return Err(bad(&format!("{other:?}"))),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(bad("stream is not a pair"));
        };
        let Some(Value::Array(entries)) = pair.pop() else {
            return Err(bad("no entries"));
        };
        out.reserve(entries.len());
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err(bad("entry is not an array"));
            };
            let fields = parts.pop();
            let id = match parts.pop() {
                Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| bad("entry id"))?,
                Some(Value::SimpleString(s)) => s,
                _ => return Err(bad("entry id")),
            };
            let mut entry = EntryBuilder::default();
            if let Some(Value::Array(fields)) = fields {
                let mut it = fields.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let Value::BulkString(k) = k else { continue };
                    entry.field_value(&k, v);
                }
            }
            out.push(entry.finish(id));
        }
    }
    Ok(out)
}

/// Builds a [`Delivery`] from an entry's fields, whichever parser read them.
#[derive(Default)]
pub(crate) struct EntryBuilder {
    /// `None` until an `e` field is seen: an entry without one is foreign, an empty one is not.
    envelope: Option<Vec<u8>>,
    lease_expiries: u32,
    job_id: Option<String>,
    others: serde_json::Map<String, serde_json::Value>,
}

impl EntryBuilder {
    /// A field as bytes (`None`: a null value).
    pub(crate) fn field(&mut self, key: &[u8], value: Option<&[u8]>) {
        match (key, value) {
            (b"e", Some(v)) => self.envelope = Some(v.to_vec()),
            (b"r", Some(v)) => self.lease_expiries = lease_expiries(v),
            (b"i", Some(v)) => self.job_id = job_id(v),
            (k, v) => self.other(
                k,
                v.map_or_else(|| "Nil".to_owned(), |b| String::from_utf8_lossy(b).into_owned()),
            ),
        }
    }

    /// A field as redis-rs parsed it.
    pub(crate) fn field_value(&mut self, key: &[u8], value: Value) {
        match (key, value) {
            (b"e", Value::BulkString(v)) => self.envelope = Some(v),
            (b"r", Value::BulkString(v)) => self.lease_expiries = lease_expiries(&v),
            (b"i", Value::BulkString(v)) => self.job_id = job_id(&v),
            (k, Value::BulkString(b)) => self.other(k, String::from_utf8_lossy(&b).into_owned()),
            // The same text whichever parser read the null.
            (k, Value::Nil) => self.field(k, None),
            (k, other) => self.other(k, format!("{other:?}")),
        }
    }

    fn other(&mut self, key: &[u8], value: String) {
        self.others
            .insert(String::from_utf8_lossy(key).into_owned(), value.into());
    }

    /// When the entry has no `e` field, all its fields are kept as JSON for the dead record; an
    /// empty `e` field is left empty (the worker names it as such).
    pub(crate) fn finish(self, entry_id: String) -> Delivery {
        let (envelope, foreign) = match self.envelope {
            Some(e) => (e, None),
            None => (
                Vec::new(),
                Some(serde_json::Value::Object(self.others).to_string()),
            ),
        };
        Delivery::new(entry_id, envelope)
            .with_lease_expiries(self.lease_expiries)
            .with_job_id(self.job_id)
            .with_foreign_fields(foreign)
    }
}

fn lease_expiries(v: &[u8]) -> u32 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The `i` field: a job id, when it is non-empty text.
fn job_id(v: &[u8]) -> Option<String> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
