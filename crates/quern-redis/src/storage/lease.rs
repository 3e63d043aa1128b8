//! Leases: renewed by their holder, requeued when expired, released at shutdown.

use std::time::Duration;

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys};
use crate::scripts;

use super::{BATCH, Storage};

impl Storage {
    /// Renews the leases of `entry_ids` held by `consumer`; returns the ids still leased to it
    /// (an id missing from the answer lost its lease and has been queued again), in the order
    /// Redis answers.
    pub async fn renew(
        &self,
        keys: &QueueKeys,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<String>, StorageError> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("XCLAIM")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entry_ids)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("renewing leases"))
    }

    /// Puts jobs whose lease expired back in the queue, each as a new entry that carries the
    /// job's id (field `i`) and is indexed by it; returns how many.
    pub async fn requeue_expired(&self, keys: &QueueKeys, lease: Duration) -> Result<usize, StorageError> {
        let mut total = 0;
        loop {
            let n: usize = scripts::REQUEUE_EXPIRED
                .key(&keys.stream)
                .key(&keys.jobs)
                .arg(GROUP)
                .arg(lease.as_millis() as u64)
                .arg(BATCH)
                .arg(&keys.queue)
                .invoke_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("requeueing expired leases"))?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Gives back every job leased to `consumer`, unchanged (each as a new entry that carries
    /// the job's id and is indexed by it); returns how many.
    pub async fn release(&self, keys: &QueueKeys, consumer: &str) -> Result<usize, StorageError> {
        let mut total = 0;
        loop {
            let n: usize = scripts::RELEASE
                .key(&keys.stream)
                .key(&keys.jobs)
                .arg(GROUP)
                .arg(consumer)
                .arg(BATCH)
                .arg(&keys.queue)
                .invoke_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("releasing leases"))?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Removes `consumer` from the group (after it released its jobs).
    pub async fn delete_consumer(&self, keys: &QueueKeys, consumer: &str) -> Result<(), StorageError> {
        redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .exec_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("removing the consumer"))
    }
}
