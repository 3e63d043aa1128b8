//! Enqueueing typed jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quern_core::envelope::{check_size, decode_payload, encode_new};
use quern_core::{Envelope, Event, EventKind, Events, Job, JobId};
use serde_json::value::RawValue;

use crate::error::StorageError;
use crate::keys::{QueueKeys, validate_queue};
use crate::storage::{RedisConfig, Storage};

/// Jobs per round trip in [`Producer::enqueue_many`].
const BULK_CHUNK: usize = 1000;

/// Enqueues jobs from any process. Cheap to clone.
///
/// ```no_run
/// # use quern_core::{Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Resize { image: u64 }
/// # impl Job for Resize { const NAME: &'static str = "resize"; type Resources = ();
/// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
/// # async fn demo() -> Result<(), quern_redis::StorageError> {
/// use quern_redis::{Producer, RedisConfig};
/// use std::time::Duration;
///
/// let producer = Producer::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let id = producer.enqueue(&Resize { image: 7 }).await?;
/// producer.enqueue_in(&Resize { image: 8 }, Duration::from_secs(60)).await?;
/// let ids = producer.enqueue_many(&[Resize { image: 9 }, Resize { image: 10 }]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    storage: Storage,
    /// Where `Enqueued` events go (nowhere until someone subscribes).
    events: Events,
    /// Whether the server's eviction policy was checked (at connect, or at the first enqueue of
    /// a producer made with [`Producer::new`]): one warning per producer, not one per job.
    checked: Arc<AtomicBool>,
}

impl Producer {
    /// Connects to Redis, and warns (one WARN log line, with the fix) when Redis may evict
    /// keys, queued jobs included ([`Storage::check_server`]).
    pub async fn connect(config: RedisConfig) -> Result<Self, StorageError> {
        let producer = Self::new(Storage::connect(config).await?);
        producer.check_server_once().await;
        Ok(producer)
    }

    /// [`Storage::check_server`] the first time this producer (or a clone) asks.
    async fn check_server_once(&self) {
        if !self.checked.swap(true, Ordering::Relaxed) {
            self.storage.check_server("producer").await;
        }
    }

    /// A producer sharing an existing connection.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            events: Events::default(),
            checked: Arc::default(),
        }
    }

    /// Emits an `Enqueued` event to `events` for every job this producer writes.
    #[must_use]
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    fn enqueued<'a>(&self, queue: &str, job: &str, ids: impl IntoIterator<Item = &'a JobId>) {
        if !self.events.is_observed() {
            return;
        }
        let now = self.storage.clock().now_ms();
        let (queue, job): (Arc<str>, Arc<str>) = (queue.into(), job.into());
        for id in ids {
            self.events.emit(|| {
                Event::new(
                    EventKind::Enqueued,
                    id.as_str(),
                    job.clone(),
                    queue.clone(),
                    1,
                    now,
                )
            });
        }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The first-attempt envelope of `job`, in one pass; with `id` unset (the common case) it
    /// carries none, and the stream entry's id stands for it.
    fn encode<J: Job>(&self, id: &JobId, job: &J) -> Result<String, StorageError> {
        encode_new(id, J::NAME, job, self.storage.config().max_payload_bytes).map_err(StorageError::Payload)
    }

    fn queue<J: Job>() -> Result<String, StorageError> {
        let queue = J::options().queue.into_owned();
        validate_queue(&queue)?;
        Ok(queue)
    }

    /// Enqueues one job to run now; returns its id, `<queue>/<entry id>` (the envelope carries
    /// none: the id says where the job is, and finding it needs no index).
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<JobId, StorageError> {
        let queue = Self::queue::<J>()?;
        let envelope = self.encode(&unset(), job)?;
        let id = self.push_one(&queue, envelope).await?;
        self.enqueued(&queue, J::NAME, [&id]);
        Ok(id)
    }

    /// Enqueues many jobs, one round trip per 1,000; returns their ids in order.
    pub async fn enqueue_many<'a, J: Job + 'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a J>,
    ) -> Result<Vec<JobId>, StorageError> {
        let queue = Self::queue::<J>()?;
        let keys = self.storage.keys(&queue);
        let mut ids = Vec::new();
        let mut chunk = Vec::with_capacity(BULK_CHUNK);
        let no_id = unset();
        for job in jobs {
            chunk.push(self.encode(&no_id, job)?);
            if chunk.len() == BULK_CHUNK {
                self.push_chunk(&keys, &chunk, &mut ids).await?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.push_chunk(&keys, &chunk, &mut ids).await?;
        }
        self.enqueued(&queue, J::NAME, &ids);
        Ok(ids)
    }

    async fn push_chunk(
        &self,
        keys: &QueueKeys,
        chunk: &[String],
        ids: &mut Vec<JobId>,
    ) -> Result<(), StorageError> {
        self.check_server_once().await;
        let entries = self.storage.push(keys, chunk).await?;
        if entries.len() != chunk.len() {
            return Err(missing_ids(chunk.len(), entries.len()));
        }
        ids.extend(entries.iter().map(|e| JobId::for_entry(&keys.queue, e)));
        Ok(())
    }

    /// Enqueues a job to run after `delay` (millisecond precision), counted from the storage's
    /// clock.
    pub async fn enqueue_in<J: Job>(&self, job: &J, delay: Duration) -> Result<JobId, StorageError> {
        self.enqueue_at(job, self.storage.clock().now() + delay).await
    }

    /// Enqueues a job to run at `at` (millisecond precision); a time in the past runs now. A
    /// delayed job carries an id of its own (it has no stream entry yet) and is indexed by it.
    pub async fn enqueue_at<J: Job>(&self, job: &J, at: SystemTime) -> Result<JobId, StorageError> {
        let queue = Self::queue::<J>()?;
        match self.due_later(at) {
            None => {
                let envelope = self.encode(&unset(), job)?;
                let id = self.push_one(&queue, envelope).await?;
                self.enqueued(&queue, J::NAME, [&id]);
                Ok(id)
            }
            Some(due) => {
                let id = JobId::new();
                let envelope = self.encode(&id, job)?;
                let keys = self.storage.keys(&queue);
                self.check_server_once().await;
                self.storage.schedule(&keys, &[(due, envelope)]).await?;
                self.enqueued(&queue, J::NAME, [&id]);
                Ok(id)
            }
        }
    }

    /// Enqueues a job given by name and JSON text, as the CLI does. Invalid JSON is refused with
    /// the position of the error, and nothing is written.
    pub async fn enqueue_json(
        &self,
        queue: &str,
        job_name: &str,
        json: &str,
        at: Option<SystemTime>,
    ) -> Result<JobId, StorageError> {
        validate_queue(queue)?;
        check_size(json.as_bytes(), self.storage.config().max_payload_bytes)
            .map_err(StorageError::Payload)?;
        let payload: Box<RawValue> = decode_payload(json).map_err(StorageError::Payload)?;
        match at.and_then(|at| self.due_later(at)) {
            None => {
                let env = Envelope::with_id(unset(), job_name, &payload);
                let id = self.push_one(queue, env.encode()).await?;
                self.enqueued(queue, job_name, [&id]);
                Ok(id)
            }
            Some(due) => {
                let env = Envelope::new(job_name, &payload);
                let keys = self.storage.keys(queue);
                self.check_server_once().await;
                self.storage.schedule(&keys, &[(due, env.encode())]).await?;
                self.enqueued(queue, job_name, [&env.id]);
                Ok(env.id)
            }
        }
    }

    /// The due time of `at`, ms since the epoch, when it is after the clock's now.
    fn due_later(&self, at: SystemTime) -> Option<u64> {
        let due = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (due > self.storage.clock().now_ms()).then_some(due)
    }

    async fn push_one(&self, queue: &str, envelope: String) -> Result<JobId, StorageError> {
        self.check_server_once().await;
        let keys = self.storage.keys(queue);
        let entries = self.storage.push(&keys, &[envelope]).await?;
        match entries.first() {
            Some(entry) => Ok(JobId::for_entry(queue, entry)),
            None => Err(missing_ids(1, 0)),
        }
    }
}

/// No id: the envelope leaves it out and the stream entry's id stands for it.
fn unset() -> JobId {
    JobId::from("")
}

fn missing_ids(sent: usize, got: usize) -> StorageError {
    StorageError::Protocol {
        context: "enqueueing",
        detail: format!("{got} entry ids for {sent} jobs"),
    }
}
