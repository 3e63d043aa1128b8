//! Finding any job by its id, without a scan: O(1) or O(log n) per queue.
//!
//! - An id `<queue>/<entry id>` names the stream entry the job was stored as: `find_entry.lua`
//!   reads that entry and its lease (`XRANGE e e`, `XPENDING … e e 1`): pending, running (with
//!   its worker and lease age), or completed and not yet trimmed.
//! - Otherwise, or when that entry is gone (the job moved, or died), the queue's `jobs` index
//!   (`HGET`) says where it is now, and the dead records (`HGET`) hold it once dead. For an id of
//!   its own and no queue named, every known queue's index and dead records are asked in one
//!   pipeline.

use quern_core::envelope::decode_envelope;
use quern_core::{DeadRecord, FinishedRecord, JobId, JobInfo, JobState, LeaseInfo};
use redis::Value;

use crate::delivery::EntryBuilder;
use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys, parse_entry_id, validate_queue};
use crate::scripts;

use super::Inspector;

/// The `(queue, entry id)` an id `<queue>/<entry id>` names, when both parts are valid.
pub(super) fn entry_of(id: &str) -> Option<(&str, &str)> {
    let (queue, entry) = id.rsplit_once('/')?;
    (validate_queue(queue).is_ok() && parse_entry_id(entry).is_some()).then_some((queue, entry))
}

/// Where a `jobs` index value says a job is.
#[derive(Debug, PartialEq, Eq)]
enum Indexed<'a> {
    /// `e:<entry id>`: in the stream.
    Entry(&'a str),
    /// `s:<due ms>:<envelope>`: delayed.
    Scheduled(u64, &'a str),
    /// `r:<due ms>:<envelope>`: waiting for its next attempt.
    Retrying(u64, &'a str),
}

fn parse_indexed(value: &str) -> Option<Indexed<'_>> {
    let (tag, rest) = value.split_once(':')?;
    let delayed = || {
        let (due, env) = rest.split_once(':')?;
        Some((due.parse().ok()?, env))
    };
    match tag {
        "e" => parse_entry_id(rest).map(|_| Indexed::Entry(rest)),
        "s" => delayed().map(|(due, env)| Indexed::Scheduled(due, env)),
        "r" => delayed().map(|(due, env)| Indexed::Retrying(due, env)),
        _ => None,
    }
}

impl Inspector {
    /// Finds the job `id` in `queue`, or in any queue when `None`: where it is, its envelope,
    /// due time, lease, dead record, or finished record (state, attempts, times, last error,
    /// result). A completed job is found while its finished record is kept (its type's
    /// `JobOptions::keep_result`), and otherwise only by an id `<queue>/<entry id>` until its
    /// entry is trimmed (within about a second); a cancelled one for a day.
    ///
    /// A bounded number of commands per queue, none of them a scan.
    pub async fn find_job(&self, id: &str, queue: Option<&str>) -> Result<Option<JobInfo>, StorageError> {
        if let Some((own, entry)) = entry_of(id)
            && queue.is_none_or(|q| q == own)
            && let Some(mut info) = self.in_stream(&self.storage.keys(own), id, entry).await?
        {
            if info.state == JobState::Completed
                && let Some(record) = self.finished(&self.storage.keys(own), id).await?
            {
                info.state = finished_state(&record);
                info.finished = Some(record);
            }
            return Ok(Some(info));
        }
        let queues = self.candidates(Some(id), queue).await?;
        if queues.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for keys in &queues {
            pipe.cmd("HGET").arg(&keys.jobs).arg(id);
            pipe.cmd("HGET").arg(&keys.dead_records).arg(id);
            pipe.cmd("GET").arg(keys.done(id));
        }
        let found: Vec<Option<String>> = pipe
            .query_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("finding a job"))?;
        for (keys, pair) in queues.iter().zip(found.chunks(3)) {
            if let Some(value) = &pair[0]
                && let Some(info) = self.at_indexed(keys, id, value).await?
            {
                return Ok(Some(info));
            }
            if let Some(text) = &pair[1] {
                let mut info = JobInfo::new(id, &keys.queue, JobState::Dead);
                match serde_json::from_str::<DeadRecord>(text) {
                    Ok(record) => {
                        info.envelope = record.envelope.clone();
                        info.dead = Some(record);
                    }
                    Err(_) => info.envelope = Some(text.clone()),
                }
                return Ok(Some(info));
            }
            if let Some(text) = &pair[2]
                && let Ok(record) = serde_json::from_str::<FinishedRecord>(text)
            {
                let mut info = JobInfo::new(id, &keys.queue, finished_state(&record));
                info.finished = Some(record);
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    /// The finished record of job `id` in the queue, while it is kept.
    pub(super) async fn finished(
        &self,
        keys: &QueueKeys,
        id: &str,
    ) -> Result<Option<FinishedRecord>, StorageError> {
        let text: Option<String> = redis::cmd("GET")
            .arg(keys.done(id))
            .query_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("finding a job"))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The job where its index value says it is, checked there (a stale value finds nothing).
    async fn at_indexed(
        &self,
        keys: &QueueKeys,
        id: &str,
        value: &str,
    ) -> Result<Option<JobInfo>, StorageError> {
        let (set, state, envelope) = match parse_indexed(value) {
            Some(Indexed::Entry(entry)) => return self.in_stream(keys, id, entry).await,
            Some(Indexed::Scheduled(_, env)) => (&keys.scheduled, JobState::Scheduled, env),
            Some(Indexed::Retrying(_, env)) => (&keys.retry, JobState::Retrying, env),
            None => return Ok(None),
        };
        let due: Option<f64> = redis::cmd("ZSCORE")
            .arg(set)
            .arg(envelope)
            .query_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("finding a job"))?;
        Ok(due.map(|due| {
            let mut info = JobInfo::new(id, &keys.queue, state);
            info.envelope = Some(envelope.to_owned());
            info.due_ms = Some(due as u64);
            info
        }))
    }

    /// The job `id` as stream entry `entry`, when that entry holds it.
    async fn in_stream(
        &self,
        keys: &QueueKeys,
        id: &str,
        entry: &str,
    ) -> Result<Option<JobInfo>, StorageError> {
        let reply: Value = scripts::FIND_ENTRY
            .key(&keys.stream)
            .arg(GROUP)
            .arg(entry)
            .invoke_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("finding a job"))?;
        let bad = |detail: &str| StorageError::Protocol {
            context: "finding a job",
            detail: detail.to_owned(),
        };
        let Value::Array(parts) = reply else {
            return Err(bad("find_entry.lua did not answer an array"));
        };
        let mut parts = parts.into_iter();
        let (Some(Value::Array(fields)), Some(last), Some(Value::Array(lease))) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let mut builder = EntryBuilder::default();
        let mut it = fields.into_iter();
        while let (Some(Value::BulkString(k)), Some(v)) = (it.next(), it.next()) {
            builder.field_value(&k, v);
        }
        let delivery = builder.finish(entry.to_owned());
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        // The entry is this job's when it carries the id (moved here), or its envelope does
        // (promoted, revived), or it carries none and the id names the entry.
        let own = match (&delivery.job_id, decode_envelope(&delivery.envelope)) {
            (Some(i), _) => i.clone(),
            (None, Ok(env)) if !env.id.is_unset() => env.id.to_string(),
            _ => JobId::for_entry(&keys.queue, entry).to_string(),
        };
        if own != id {
            return Ok(None);
        }
        let state = if let [worker, idle, deliveries] = &lease[..] {
            let mut info = JobInfo::new(id, &keys.queue, JobState::Running);
            info.lease = Some(LeaseInfo::new(string(worker), int(idle), int(deliveries)));
            info
        } else {
            let last = string(&last);
            let delivered = !last.is_empty() && parse_entry_id(entry) <= parse_entry_id(&last);
            let state = if delivered {
                JobState::Completed
            } else {
                JobState::Pending
            };
            JobInfo::new(id, &keys.queue, state)
        };
        let mut info = state;
        info.entry = Some(entry.to_owned());
        info.envelope = Some(match delivery.foreign_fields {
            Some(fields) => fields,
            None => text(&delivery.envelope),
        });
        Ok(Some(info))
    }
}

/// The state a finished record says.
fn finished_state(record: &FinishedRecord) -> JobState {
    if record.state == "cancelled" {
        JobState::Cancelled
    } else {
        JobState::Completed
    }
}

fn string(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    }
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        other => string(other).parse().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_name_a_place() {
        assert_eq!(parse_indexed("e:1-0"), Some(Indexed::Entry("1-0")));
        assert_eq!(
            parse_indexed(r#"s:1700000000000:{"id":"a:b","job":"x"}"#),
            Some(Indexed::Scheduled(1_700_000_000_000, r#"{"id":"a:b","job":"x"}"#))
        );
        assert_eq!(parse_indexed("r:5:{}"), Some(Indexed::Retrying(5, "{}")));
        for bad in ["", "e:", "e:x", "s:soon:{}", "x:1-0", "s:5"] {
            assert_eq!(parse_indexed(bad), None, "{bad}");
        }
        assert_eq!(
            entry_of("emails/1700000000000-3"),
            Some(("emails", "1700000000000-3"))
        );
        assert_eq!(entry_of("a/b/1-0"), Some(("a/b", "1-0")));
        for other in ["06F9QZ0VJ3T8A2M4N5P6Q7R8S9", "emails/x", "/1-0", "a b/1-0"] {
            assert_eq!(entry_of(other), None, "{other}");
        }
    }
}
