//! Listing what waits in a queue: its pending jobs (in the stream, not yet delivered to a
//! worker), its delayed jobs and its retries, each with its envelope.
//!
//! - Pending: the stream entries after the consumer group's last delivered id (`XINFO GROUPS`,
//!   then `XRANGE (<last> + COUNT n`); every entry when no worker has read the queue yet.
//! - Delayed and retrying: the first `n` members of each sorted set, soonest first
//!   (`ZRANGE … WITHSCORES`).
//!
//! Three reads, not one atomic snapshot: a job that moves between them (promoted, claimed) can
//! be seen twice or not at all. Meant for tests and admin views of a quiet queue.

use quern_core::envelope::decode_envelope;
use quern_core::{JobId, JobInfo, JobState};
use redis::Value;

use crate::delivery::EntryBuilder;
use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys};

use super::Inspector;

impl Inspector {
    /// Up to `limit` jobs of each kind waiting in `queue` — pending (oldest first), then
    /// scheduled and retrying (soonest first) — with their envelope text, and the due time of
    /// the delayed ones. Running, completed and dead jobs are not listed (see
    /// [`find_job`](Self::find_job) and [`dead_jobs`](Self::dead_jobs)).
    pub async fn queued_jobs(&self, queue: &str, limit: usize) -> Result<Vec<JobInfo>, StorageError> {
        let keys = self.keys(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = self.pending_jobs(&keys, limit).await?;
        for (set, state) in [
            (&keys.scheduled, JobState::Scheduled),
            (&keys.retry, JobState::Retrying),
        ] {
            let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(set)
                .arg(0)
                .arg(limit - 1)
                .arg("WITHSCORES")
                .query_async(&mut self.storage.conn())
                .await
                .map_err(StorageError::redis("listing delayed jobs"))?;
            for (envelope, due) in members {
                // A delayed job always carries its id; anything else is listed under its text.
                let id = decode_envelope(envelope.as_bytes())
                    .ok()
                    .filter(|env| !env.id.is_unset())
                    .map(|env| env.id.to_string())
                    .unwrap_or_default();
                let mut info = JobInfo::new(id, &keys.queue, state);
                info.envelope = Some(envelope);
                info.due_ms = Some(due as u64);
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Entries not yet delivered to the consumer group, oldest first.
    async fn pending_jobs(&self, keys: &QueueKeys, limit: usize) -> Result<Vec<JobInfo>, StorageError> {
        let mut conn = self.storage.conn();
        let groups: Result<Value, redis::RedisError> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&keys.stream)
            .query_async(&mut conn)
            .await;
        let start = match groups {
            Ok(value) => match last_delivered(value) {
                Some(last) => format!("({last}"),
                None => "-".to_owned(),
            },
            // No stream yet: nothing was ever enqueued.
            Err(e) if e.to_string().contains("no such key") => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::redis("listing pending jobs")(e)),
        };
        let entries: Value = redis::cmd("XRANGE")
            .arg(&keys.stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("listing pending jobs"))?;
        let Value::Array(entries) = entries else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(mut parts) = entry else { continue };
            let (Some(Value::Array(fields)), Some(id)) = (parts.pop(), parts.pop()) else {
                continue;
            };
            let entry_id = text(&id);
            let mut builder = EntryBuilder::default();
            let mut it = fields.into_iter();
            while let (Some(Value::BulkString(k)), Some(v)) = (it.next(), it.next()) {
                builder.field_value(&k, v);
            }
            let delivery = builder.finish(entry_id.clone());
            // The job's id as the worker will name it (see `find`).
            let job_id = match (&delivery.job_id, decode_envelope(&delivery.envelope)) {
                (Some(i), _) => i.clone(),
                (None, Ok(env)) if !env.id.is_unset() => env.id.to_string(),
                _ => JobId::for_entry(&keys.queue, &entry_id).to_string(),
            };
            let mut info = JobInfo::new(job_id, &keys.queue, JobState::Pending);
            info.envelope = Some(match delivery.foreign_fields {
                Some(fields) => fields,
                None => String::from_utf8_lossy(&delivery.envelope).into_owned(),
            });
            out.push(info);
        }
        Ok(out)
    }
}

/// The `last-delivered-id` of Quern's group in an `XINFO GROUPS` reply (RESP2 flat arrays or
/// RESP3 maps), when the group exists.
fn last_delivered(reply: Value) -> Option<String> {
    let Value::Array(groups) = reply else {
        return None;
    };
    groups.into_iter().find_map(|group| {
        let pairs: Vec<(String, Value)> = match group {
            Value::Array(flat) => {
                let mut it = flat.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((text(&k), v));
                }
                pairs
            }
            Value::Map(map) => map.into_iter().map(|(k, v)| (text(&k), v)).collect(),
            _ => return None,
        };
        let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| text(v));
        (field("name").as_deref() == Some(GROUP)).then(|| field("last-delivered-id"))?
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_last_delivered_id_of_our_group_is_read_from_either_protocol() {
        let other = Value::Array(vec![
            bulk("name"),
            bulk("other"),
            bulk("last-delivered-id"),
            bulk("9-9"),
        ]);
        let ours = Value::Array(vec![
            bulk("name"),
            bulk(GROUP),
            bulk("pending"),
            Value::Int(0),
            bulk("last-delivered-id"),
            bulk("5-1"),
        ]);
        assert_eq!(
            last_delivered(Value::Array(vec![other.clone(), ours])),
            Some("5-1".into())
        );
        assert_eq!(last_delivered(Value::Array(vec![other])), None);
        let map = Value::Map(vec![
            (bulk("name"), bulk(GROUP)),
            (bulk("last-delivered-id"), bulk("0-0")),
        ]);
        assert_eq!(last_delivered(Value::Array(vec![map])), Some("0-0".into()));
    }
}
