//! Enqueueing typed jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::borrow::Cow;

use quern_core::envelope::{NewEnvelope, check_size, decode_payload, encode_new};
use quern_core::{EnqueueOptions, Enqueued, Event, EventKind, Events, Job, JobId, Unique, When};
use serde_json::value::RawValue;

use crate::error::StorageError;
use crate::keys::{QueueKeys, validate_queue};
use crate::storage::{IdPush, RedisConfig, Storage};

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

    /// The first-attempt envelope of `job`, in one pass.
    fn encode<J: Job>(&self, new: &NewEnvelope<'_>, job: &J) -> Result<String, StorageError> {
        encode_new(new, job, self.storage.config().max_payload_bytes).map_err(StorageError::Payload)
    }

    /// The queue a job goes to: the options' override, else its type's.
    fn queue<'o, J: Job>(options: &'o EnqueueOptions) -> Result<Cow<'o, str>, StorageError> {
        let queue = match options.queue_override() {
            Some(q) => Cow::Borrowed(q),
            None => Cow::Owned(J::options().queue.into_owned()),
        };
        validate_queue(&queue)?;
        Ok(queue)
    }

    /// Enqueues one job to run now; returns its id, `<queue>/<entry id>` (the envelope carries
    /// none: the id says where the job is, and finding it needs no index).
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<JobId, StorageError> {
        Ok(self.enqueue_with(job, EnqueueOptions::new()).await?.id)
    }

    /// Enqueues one job as `options` say: another queue, a delay or a time, an attempt budget,
    /// a caller-supplied id (idempotent: a second enqueue with an id already known writes
    /// nothing and returns [`Enqueued::duplicate`] `true`), headers.
    ///
    /// ```no_run
    /// # use quern_core::{Job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Charge { order: u64 }
    /// # impl Job for Charge { const NAME: &'static str = "charge"; type Resources = ();
    /// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
    /// # async fn demo(producer: quern_redis::Producer) -> Result<(), quern_redis::StorageError> {
    /// use quern_core::EnqueueOptions;
    /// let first = producer.enqueue_with(&Charge { order: 7 }, EnqueueOptions::new().id("charge:7")).await?;
    /// let again = producer.enqueue_with(&Charge { order: 7 }, EnqueueOptions::new().id("charge:7")).await?;
    /// assert!(!first.duplicate && again.duplicate && first.id == again.id);
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_with<J: Job>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, StorageError> {
        let queue = Self::queue::<J>(&options)?;
        self.write_one(&queue, J::NAME, &options, job.unique(), |new| {
            self.encode(new, job)
        })
        .await
    }

    /// Enqueues many jobs, one round trip per 1,000; returns their ids in order.
    pub async fn enqueue_many<'a, J: Job + 'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a J>,
    ) -> Result<Vec<JobId>, StorageError> {
        self.enqueue_many_with(jobs, &EnqueueOptions::new()).await
    }

    /// Enqueues many jobs with the same `options` (queue, delay or time, attempts, headers),
    /// one round trip per 1,000; returns their ids in order. A caller-supplied id names one
    /// job: it is refused here (enqueue such jobs one by one with [`enqueue_with`](Self::enqueue_with)).
    pub async fn enqueue_many_with<'a, J: Job + 'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a J>,
        options: &EnqueueOptions,
    ) -> Result<Vec<JobId>, StorageError> {
        if options.caller_id().is_some() {
            return Err(StorageError::Options(
                "a caller-supplied id names one job: enqueue such jobs one by one with enqueue_with".into(),
            ));
        }
        if options.unique_rule().is_some() {
            return Err(StorageError::Options(
                "one unique key names one job: give the job type a Job::unique rule, or enqueue such jobs one by one".into(),
            ));
        }
        let queue = Self::queue::<J>(options)?;
        let keys = self.storage.keys(&queue);
        let mut ids = Vec::new();
        if let Some(due) = self.due(options.when_to_run()) {
            // Delayed jobs carry an id of their own (they have no stream entry yet).
            let mut batch = Vec::new();
            for job in jobs {
                let id = JobId::new();
                let new = new_envelope(&id, J::NAME, options);
                batch.push((due, self.encode(&new, job)?));
                ids.push(id);
            }
            for chunk in batch.chunks(BULK_CHUNK) {
                self.check_server_once().await;
                self.storage.schedule(&keys, chunk).await?;
            }
            self.enqueued(&queue, J::NAME, &ids);
            return Ok(ids);
        }
        let mut chunk = Vec::with_capacity(BULK_CHUNK);
        // Where in `ids` the batches wrote (a unique job's enqueue reports its own).
        let mut plain: Vec<std::ops::Range<usize>> = Vec::new();
        let no_id = unset();
        let new = new_envelope(&no_id, J::NAME, options);
        for job in jobs {
            if let Some(rule) = job.unique() {
                // Its lock is taken in the same script as its enqueue, one job at a time, after
                // the jobs before it (a duplicate within the batch is found too).
                if !chunk.is_empty() {
                    self.push_chunk(&keys, &chunk, &mut ids).await?;
                    plain.push(ids.len() - chunk.len()..ids.len());
                    chunk.clear();
                }
                let one = self
                    .write_one(&queue, J::NAME, options, Some(rule), |new| self.encode(new, job))
                    .await?;
                ids.push(one.id);
                continue;
            }
            chunk.push(self.encode(&new, job)?);
            if chunk.len() == BULK_CHUNK {
                self.push_chunk(&keys, &chunk, &mut ids).await?;
                plain.push(ids.len() - chunk.len()..ids.len());
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.push_chunk(&keys, &chunk, &mut ids).await?;
            plain.push(ids.len() - chunk.len()..ids.len());
        }
        for range in plain {
            self.enqueued(&queue, J::NAME, &ids[range]);
        }
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
        Ok(self
            .enqueue_with(job, EnqueueOptions::new().delay(delay))
            .await?
            .id)
    }

    /// Enqueues a job to run at `at` (millisecond precision); a time in the past runs now. A
    /// delayed job carries an id of its own (it has no stream entry yet) and is indexed by it.
    pub async fn enqueue_at<J: Job>(&self, job: &J, at: SystemTime) -> Result<JobId, StorageError> {
        Ok(self.enqueue_with(job, EnqueueOptions::new().at(at)).await?.id)
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
        let mut options = EnqueueOptions::new().queue(queue);
        if let Some(at) = at {
            options = options.at(at);
        }
        Ok(self.enqueue_json_with(job_name, json, options).await?.id)
    }

    /// Enqueues a job given by name and JSON text with `options` (the queue defaults to
    /// `default`: this path knows no job type). Invalid JSON is refused with the position of
    /// the error, and nothing is written.
    pub async fn enqueue_json_with(
        &self,
        job_name: &str,
        json: &str,
        options: EnqueueOptions,
    ) -> Result<Enqueued, StorageError> {
        let queue = options.queue_override().unwrap_or("default").to_owned();
        validate_queue(&queue)?;
        check_size(json.as_bytes(), self.storage.config().max_payload_bytes)
            .map_err(StorageError::Payload)?;
        let payload: Box<RawValue> = decode_payload(json).map_err(StorageError::Payload)?;
        self.write_one(&queue, job_name, &options, None, |new| {
            self.encode_raw(new, &payload)
        })
        .await
    }

    fn encode_raw(&self, new: &NewEnvelope<'_>, payload: &RawValue) -> Result<String, StorageError> {
        encode_new(new, payload, usize::MAX).map_err(StorageError::Payload)
    }

    /// Writes one job to `queue` as `options` say; `encode` makes its envelope.
    async fn write_one(
        &self,
        queue: &str,
        job_name: &str,
        options: &EnqueueOptions,
        job_unique: Option<Unique>,
        encode: impl FnOnce(&NewEnvelope<'_>) -> Result<String, StorageError>,
    ) -> Result<Enqueued, StorageError> {
        let mut caller = options.caller_id().transpose()?;
        let due = self.due(options.when_to_run());
        let keys = self.storage.keys(queue);
        let unique = options.unique_rule().cloned().or(job_unique);
        let fresh = caller.is_none();
        if let Some(rule) = &unique {
            rule.check().map_err(StorageError::Options)?;
            // The lock names its holder by id: a unique job has an id of its own (indexed).
            caller.get_or_insert_with(JobId::new);
        }
        let enqueued = match (caller, due) {
            (None, None) => {
                let no_id = unset();
                let envelope = encode(&new_envelope(&no_id, job_name, options))?;
                Enqueued::new(self.push_one(queue, envelope).await?, queue)
            }
            (None, Some(due)) => {
                let id = JobId::new();
                let envelope = encode(&new_envelope(&id, job_name, options))?;
                self.check_server_once().await;
                self.storage.schedule(&keys, &[(due, envelope)]).await?;
                Enqueued::new(id, queue)
            }
            (Some(id), due) => {
                let envelope = encode(&new_envelope(&id, job_name, options))?;
                self.check_server_once().await;
                match self
                    .storage
                    .push_with_id(&keys, id.as_str(), &envelope, due, unique.as_ref(), fresh)
                    .await?
                {
                    IdPush::Written(_) => Enqueued::new(id, queue),
                    IdPush::Held(holder) => return Ok(Enqueued::duplicate(JobId::from(holder), queue)),
                    _ => return Ok(Enqueued::duplicate(id, queue)),
                }
            }
        };
        self.enqueued(queue, job_name, [&enqueued.id]);
        Ok(enqueued)
    }

    /// The due time `when` names, ms since the epoch, when it is after the clock's now.
    fn due(&self, when: When) -> Option<u64> {
        match when {
            When::Now => None,
            When::In(delay) => self.due_later(self.storage.clock().now() + delay),
            When::At(at) => self.due_later(at),
            _ => None,
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

/// The new envelope of a job of `job_name` with id `id`, as `options` say.
fn new_envelope<'a>(id: &'a JobId, job_name: &'a str, options: &'a EnqueueOptions) -> NewEnvelope<'a> {
    NewEnvelope::new(id, job_name, options.headers()).max_attempts(options.attempts_override())
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
