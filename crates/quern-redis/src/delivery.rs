//! [`Delivery`]: one stream entry as a worker receives it, whichever parser read the reply.

use redis::Value;

use crate::error::StorageError;

/// One entry read from a queue's stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id: what acks, retries and lease renewals name.
    pub entry_id: String,
    /// The envelope bytes (field `e`), exactly as stored.
    pub envelope: Vec<u8>,
    /// How many times this job's lease expired before (field `r`).
    pub lease_expiries: u32,
    /// When the entry has no `e` field (not written by a Quern producer): all its fields as a
    /// JSON object, so that what was stored is kept in the dead record.
    pub foreign_fields: Option<String>,
}

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
    envelope: Vec<u8>,
    lease_expiries: u32,
    others: serde_json::Map<String, serde_json::Value>,
}

impl EntryBuilder {
    /// A field as bytes (`None`: a null value).
    pub(crate) fn field(&mut self, key: &[u8], value: Option<&[u8]>) {
        match (key, value) {
            (b"e", Some(v)) => self.envelope = v.to_vec(),
            (b"r", Some(v)) => self.lease_expiries = lease_expiries(v),
            (k, v) => self.other(
                k,
                v.map_or_else(|| "Nil".to_owned(), |b| String::from_utf8_lossy(b).into_owned()),
            ),
        }
    }

    /// A field as redis-rs parsed it.
    pub(crate) fn field_value(&mut self, key: &[u8], value: Value) {
        match (key, value) {
            (b"e", Value::BulkString(v)) => self.envelope = v,
            (b"r", Value::BulkString(v)) => self.lease_expiries = lease_expiries(&v),
            (k, Value::BulkString(b)) => self.other(k, String::from_utf8_lossy(&b).into_owned()),
            (k, other) => self.other(k, format!("{other:?}")),
        }
    }

    fn other(&mut self, key: &[u8], value: String) {
        self.others
            .insert(String::from_utf8_lossy(key).into_owned(), value.into());
    }

    /// When the entry has no `e` field, all its fields are kept as JSON for the dead record.
    pub(crate) fn finish(self, entry_id: String) -> Delivery {
        let foreign_fields = self
            .envelope
            .is_empty()
            .then(|| serde_json::Value::Object(self.others).to_string());
        Delivery {
            entry_id,
            envelope: self.envelope,
            lease_expiries: self.lease_expiries,
            foreign_fields,
        }
    }
}

fn lease_expiries(v: &[u8]) -> u32 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
