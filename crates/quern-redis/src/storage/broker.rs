//! `impl Broker for Storage`: the worker's interface, each method one of the storage's own.

use std::time::Duration;

use quern_core::broker::{Broker, Control, Delivery, Promoted, Settle, SettleOptions, TrimReport};
use redis::aio::ConnectionManager;

use crate::RedisConfig;
use crate::error::StorageError;
use crate::keys::{QueueKeys, validate_queue};
use crate::resp::Reader;

use super::Storage;

impl Broker for Storage {
    type Error = StorageError;
    type Queue = QueueKeys;
    type Claimer = Reader;
    type Waiter = ConnectionManager;

    fn describe(&self) -> String {
        Storage::describe(self)
    }

    /// Connects again with the same configuration and clock: the new connections (and their
    /// driver tasks) belong to the runtime this runs on.
    async fn reopen(&self) -> Result<Self, StorageError> {
        let storage = Storage::connect(RedisConfig::clone(&self.config)).await?;
        Ok(storage.with_clock(self.clock.clone()))
    }

    fn max_payload_bytes(&self) -> usize {
        self.config.max_payload_bytes
    }

    fn queue(&self, name: &str) -> Result<QueueKeys, StorageError> {
        validate_queue(name)?;
        Ok(self.keys(name))
    }

    fn queue_name(queue: &QueueKeys) -> &str {
        &queue.queue
    }

    /// Warns when Redis may evict keys, queued jobs included ([`Storage::check_server`]).
    async fn check_server(&self) {
        Storage::check_server(self, "worker").await;
    }

    /// Creates the consumer group (and the stream) if missing and loads the scripts.
    async fn prepare(&self, queue: &QueueKeys) -> Result<(), StorageError> {
        self.ensure_group(queue).await?;
        self.load_scripts().await
    }

    async fn claimer(&self, block: Duration) -> Result<Reader, StorageError> {
        self.reader(block).await
    }

    async fn claim(
        &self,
        claimer: &mut Reader,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.read(claimer, queue, consumer, count, block).await
    }

    async fn settle(
        &self,
        queue: &QueueKeys,
        ops: &[Settle],
        options: SettleOptions,
    ) -> Result<(), StorageError> {
        Storage::settle(self, queue, ops, options).await
    }

    async fn renew(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<String>, StorageError> {
        Storage::renew(self, queue, consumer, entry_ids).await
    }

    async fn requeue_expired(&self, queue: &QueueKeys, lease: Duration) -> Result<usize, StorageError> {
        Storage::requeue_expired(self, queue, lease).await
    }

    async fn release(&self, queue: &QueueKeys, consumer: &str) -> Result<usize, StorageError> {
        Storage::release(self, queue, consumer).await
    }

    async fn remove_consumer(&self, queue: &QueueKeys, consumer: &str) -> Result<(), StorageError> {
        self.delete_consumer(queue, consumer).await
    }

    async fn promote_due(&self, queue: &QueueKeys, now_ms: u64) -> Result<Promoted, StorageError> {
        Storage::promote_due(self, queue, now_ms).await
    }

    async fn waiter(&self, timeout: Duration) -> Result<ConnectionManager, StorageError> {
        self.dedicated(timeout).await
    }

    async fn wait_for_wake(
        &self,
        waiter: &mut ConnectionManager,
        queue: &QueueKeys,
        timeout: Duration,
    ) -> Result<bool, StorageError> {
        self.wait_wake(waiter, queue, timeout).await
    }

    async fn control(&self, queue: &QueueKeys, ids: &[String]) -> Result<Control, StorageError> {
        let (paused, cancelled) = Storage::control(self, queue, ids).await?;
        Ok(Control::new(paused, cancelled))
    }

    async fn trim(&self, queue: &QueueKeys) -> Result<TrimReport, StorageError> {
        self.trim_acked(queue).await
    }

    async fn push(&self, queue: &QueueKeys, envelopes: &[String]) -> Result<(), StorageError> {
        Storage::push(self, queue, envelopes).await.map(drop)
    }

    async fn schedule(&self, queue: &QueueKeys, jobs: &[(u64, String)]) -> Result<(), StorageError> {
        Storage::schedule(self, queue, jobs).await
    }
}
