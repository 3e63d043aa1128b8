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
            // `XGROUP CREATE` is refused under OOM even when the group exists (Redis checks
            // memory first): a worker started to drain a full Redis must not stop there.
            Err(e) if e.code() == Some("OOM") && self.group_exists(keys).await => Ok(()),
            other => other.map_err(StorageError::redis("creating the consumer group")),
        }
    }

    /// Whether the queue's stream has Quern's consumer group (`XINFO GROUPS`, a read).
    async fn group_exists(&self, keys: &QueueKeys) -> bool {
        let groups: redis::RedisResult<Vec<std::collections::HashMap<String, redis::Value>>> =
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&keys.stream)
                .query_async(&mut self.conn())
                .await;
        groups.is_ok_and(|groups| {
            groups.iter().any(|g| {
                g.get("name")
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .as_deref()
                    == Some(GROUP)
            })
        })
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
