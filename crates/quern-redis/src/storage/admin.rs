//! Admin primitives: the queues, their counts, deleting a queue. The typed admin API built on
//! them (dead jobs, finding any job by id) is [`Inspector`](crate::Inspector).

use quern_core::QueueStats;

use crate::error::StorageError;
use crate::keys::{QueueKeys, queues_key};

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
        let (len, scheduled, retrying, dead, counters, paused): (
            u64,
            u64,
            u64,
            u64,
            std::collections::HashMap<String, u64>,
            u64,
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
            .cmd("EXISTS")
            .arg(&keys.paused)
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
        stats.cancelled = counters.get("cancelled").copied().unwrap_or(0);
        stats.paused = paused == 1;
        Ok(stats)
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
