//! Admin: queues, counts, dead jobs, finding a job, deleting a queue.

use quern_core::{JobState, QueueStats};
use redis::Value;

use crate::delivery::parse_read;
use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys, parse_entry_id, queues_key};
use crate::scripts;

use super::Storage;

impl Storage {
    /// Names of all queues that have seen a job.
    pub async fn queues(&self) -> Result<Vec<String>, StorageError> {
        let mut q: Vec<String> = redis::cmd("SMEMBERS")
            .arg(queues_key(&self.config.prefix))
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("listing queues"))?;
        q.sort();
        Ok(q)
    }

    /// Counts for one queue. Trims the queue's completed entries first (see
    /// [`trim_acked`](Self::trim_acked)), so it needs a primary, not a read-only replica.
    pub async fn stats(&self, keys: &QueueKeys) -> Result<QueueStats, StorageError> {
        let mut conn = self.conn();
        let (len, scheduled, retrying, dead, counters): (
            u64,
            u64,
            u64,
            u64,
            std::collections::HashMap<String, u64>,
        ) = redis::pipe()
            .cmd("XLEN")
            .arg(&keys.stream)
            .cmd("ZCARD")
            .arg(&keys.scheduled)
            .cmd("ZCARD")
            .arg(&keys.retry)
            .cmd("ZCARD")
            .arg(&keys.dead)
            .cmd("HGETALL")
            .arg(&keys.stats)
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("reading stats"))?;
        // Trims what it can first, then counts: acknowledged entries are not jobs.
        let (_, _, _, waiting, running) = self.trim_script(keys, true, false).await?;
        // Uncountable cheaply (Redis without `lag`, and over 10,000 entries held back by a long
        // lease): every entry that is not leased, an upper bound.
        let pending = u64::try_from(waiting).unwrap_or_else(|_| len.saturating_sub(running));
        let mut stats = QueueStats::new(keys.queue.clone());
        stats.pending = pending;
        stats.running = running;
        stats.scheduled = scheduled;
        stats.retrying = retrying;
        stats.dead = dead;
        stats.completed = counters.get("completed").copied().unwrap_or(0);
        stats.failed = counters.get("failed").copied().unwrap_or(0);
        Ok(stats)
    }

    /// Dead jobs, newest first: `(job id, record JSON)`.
    pub async fn dead_list(
        &self,
        keys: &QueueKeys,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.dead)
            .arg(0)
            .arg(limit.saturating_sub(1) as i64)
            .arg("REV")
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("listing dead jobs"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys.dead_records)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("listing dead jobs"))?;
        Ok(ids
            .into_iter()
            .zip(records)
            .filter_map(|(id, r)| r.map(|r| (id, r)))
            .collect())
    }

    /// The dead record of `job_id`, if it is dead.
    pub async fn dead_get(&self, keys: &QueueKeys, job_id: &str) -> Result<Option<String>, StorageError> {
        redis::cmd("HGET")
            .arg(&keys.dead_records)
            .arg(job_id)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("reading a dead job"))
    }

    /// Moves a dead job back to its queue with `envelope`; false when it was no longer dead.
    pub async fn retry_dead(
        &self,
        keys: &QueueKeys,
        job_id: &str,
        envelope: &str,
    ) -> Result<bool, StorageError> {
        let n: i64 = scripts::RETRY_DEAD
            .key(&keys.stream)
            .key(&keys.dead)
            .key(&keys.dead_records)
            .arg(job_id)
            .arg(envelope)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("retrying a dead job"))?;
        Ok(n == 1)
    }

    /// Deletes one dead job; false when it was not there.
    pub async fn dead_delete(&self, keys: &QueueKeys, job_id: &str) -> Result<bool, StorageError> {
        let (n, _): (i64, i64) = redis::pipe()
            .cmd("ZREM")
            .arg(&keys.dead)
            .arg(job_id)
            .cmd("HDEL")
            .arg(&keys.dead_records)
            .arg(job_id)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("deleting a dead job"))?;
        Ok(n == 1)
    }

    /// Deletes every dead job of the queue; returns how many there were.
    pub async fn dead_purge(&self, keys: &QueueKeys) -> Result<u64, StorageError> {
        let (n, _, _): (u64, (), ()) = redis::pipe()
            .cmd("ZCARD")
            .arg(&keys.dead)
            .cmd("UNLINK")
            .arg(&keys.dead)
            .cmd("UNLINK")
            .arg(&keys.dead_records)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("purging dead jobs"))?;
        Ok(n)
    }

    /// Finds a job by id in every state of the queue: dead, scheduled, retrying, pending or
    /// running. Scans (admin use, not for hot paths); returns the state and the stored text.
    pub async fn find_job(
        &self,
        keys: &QueueKeys,
        job_id: &str,
    ) -> Result<Option<(JobState, String)>, StorageError> {
        let mut conn = self.conn();
        if let Some(record) = self.dead_get(keys, job_id).await? {
            return Ok(Some((JobState::Dead, record)));
        }
        let needle = format!("\"id\":{}", serde_json::to_string(job_id).expect("string"));
        for (set, state) in [
            (&keys.scheduled, JobState::Scheduled),
            (&keys.retry, JobState::Retrying),
        ] {
            let mut cursor = 0u64;
            loop {
                let (next, members): (u64, Vec<String>) = redis::cmd("ZSCAN")
                    .arg(set)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(StorageError::redis("finding a job"))?;
                // ZSCAN answers member, score, member, score...
                if let Some(m) = members.iter().step_by(2).find(|m| m.contains(&needle)) {
                    return Ok(Some((state, m.clone())));
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // Entries at or before the last delivered one that are not leased are completed jobs
        // not yet trimmed: not found here.
        let last_delivered = self.trim_acked(keys).await?.last_delivered;
        let mut start = "-".to_owned();
        loop {
            let page: Value = redis::cmd("XRANGE")
                .arg(&keys.stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(StorageError::redis("finding a job"))?;
            let entries = parse_read(Value::Array(vec![Value::Array(vec![Value::Nil, page])]))?;
            let Some(last) = entries.last() else { break };
            start = format!("({}", last.entry_id);
            let count = entries.len();
            for e in entries {
                let text = String::from_utf8_lossy(&e.envelope);
                if text.contains(&needle) {
                    let pending: Value = redis::cmd("XPENDING")
                        .arg(&keys.stream)
                        .arg(GROUP)
                        .arg(&e.entry_id)
                        .arg(&e.entry_id)
                        .arg(1)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or(Value::Nil);
                    let running = matches!(&pending, Value::Array(v) if !v.is_empty());
                    let delivered = last_delivered
                        .as_deref()
                        .is_some_and(|last| parse_entry_id(&e.entry_id) <= parse_entry_id(last));
                    let state = if running {
                        JobState::Running
                    } else if delivered {
                        continue;
                    } else {
                        JobState::Pending
                    };
                    return Ok(Some((state, text.into_owned())));
                }
            }
            if count < 1000 {
                break;
            }
        }
        Ok(None)
    }

    /// Deletes every key of the queue (tests and `quern` admin use).
    pub async fn delete_queue(&self, keys: &QueueKeys) -> Result<(), StorageError> {
        redis::pipe()
            .cmd("UNLINK")
            .arg(&keys.all()[..])
            .cmd("SREM")
            .arg(queues_key(&self.config.prefix))
            .arg(&keys.queue)
            .exec_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("deleting a queue"))
    }
}
