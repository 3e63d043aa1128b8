//! Claiming: the consumer group, and reading new jobs into leases.

use std::time::Duration;

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys};
use crate::resp::Reader;
use quern_core::Delivery;

use super::Storage;

impl Storage {
    /// Creates the queue's consumer group (and stream) if missing. Jobs enqueued before the group
    /// existed are read too.
    pub async fn ensure_group(&self, keys: &QueueKeys) -> Result<(), StorageError> {
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .exec_async(&mut self.conn())
            .await;
        match res {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(StorageError::redis("creating the consumer group")),
        }
    }

    /// Claims up to `count` new jobs for `consumer`, waiting up to `block` for one to arrive.
    /// Each returned job is leased to `consumer` until acked or its lease expires.
    pub async fn read(
        &self,
        reader: &mut Reader,
        keys: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, StorageError> {
        let block_ms = block.as_millis().max(1) as u64;
        reader
            .read_group(GROUP, consumer, count, block_ms, &keys.stream)
            .await
    }

    /// A connection of its own for claiming jobs ([`read`](Self::read)): over TCP or a Unix
    /// socket it parses replies straight into deliveries; over TLS it goes through redis-rs.
    /// Connects now, so an unreachable server is reported here.
    pub async fn reader(&self, block: Duration) -> Result<Reader, StorageError> {
        let mut reader = match self.direct_target() {
            Some(target) => Reader::direct(target),
            None => Reader::managed(self.dedicated(block).await?),
        };
        reader.connect().await.map_err(|source| StorageError::Connect {
            url: self.config.redacted_url(),
            source,
        })?;
        Ok(reader)
    }
}
