//! Promotion: due delayed jobs and retries moved to the stream, and the wake-up that says when.

use std::time::Duration;

use quern_core::broker::Promoted;
use redis::Value;
use redis::aio::ConnectionManager;

use crate::error::StorageError;
use crate::keys::QueueKeys;
use crate::scripts;

use super::{BATCH, Storage};

impl Storage {
    /// Moves the delayed jobs and retries due at `now_ms` (ms since the epoch, from the caller's
    /// clock) or before to the stream; returns how many moved and when the next one is due.
    pub async fn promote_due(&self, keys: &QueueKeys, now_ms: u64) -> Result<Promoted, StorageError> {
        let mut total = 0;
        loop {
            let (n, next): (usize, i64) = scripts::PROMOTE_DUE
                .key(&keys.stream)
                .key(&keys.scheduled)
                .key(&keys.retry)
                .key(&keys.jobs)
                .arg(now_ms)
                .arg(BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("promoting due jobs"))?;
            total += n;
            if n < BATCH {
                return Ok(Promoted::new(total, u64::try_from(next).ok()));
            }
        }
    }

    /// Waits up to `timeout` for a wake token (pushed when a delayed job or retry is scheduled).
    pub async fn wait_wake(
        &self,
        conn: &mut ConnectionManager,
        keys: &QueueKeys,
        timeout: Duration,
    ) -> Result<bool, StorageError> {
        let secs = timeout.as_secs_f64().max(0.001);
        let v: Value = redis::cmd("BLPOP")
            .arg(&keys.wake)
            .arg(format!("{secs:.3}"))
            .query_async(conn)
            .await
            .map_err(StorageError::redis("waiting for scheduled jobs"))?;
        Ok(!matches!(v, Value::Nil))
    }
}
