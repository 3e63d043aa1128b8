//! The worker: claims jobs in batches, runs them under a concurrency limit, settles them, keeps
//! their leases, and shuts down without losing any.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quern_core::envelope::{Failure, decode_envelope, now_ms};
use quern_core::{ErrorChain, Extensions, JobContext, Shutdown};
use quern_redis::keys::entry_ms;
use quern_redis::{
    DeadReason, DeadRecord, DeadRetention, Delivery, QueueKeys, RedisConfig, Settle, Storage, StorageError,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Reconnect;
use crate::executor::{ExecOutcome, Limits};
use crate::in_flight::InFlight;
use crate::registry::Registry;
use crate::{lease, promoter, settler};

/// Worker settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Queues to work; empty means the queues of the registered job types.
    pub queues: Vec<String>,
    /// Most executions running at once, across all queues.
    pub concurrency: usize,
    /// Most jobs claimed in one round trip.
    pub batch: usize,
    /// How long a claimed job stays leased without renewal. A worker killed mid-job has its jobs
    /// run elsewhere after this long.
    pub lease: Duration,
    /// How long an idle fetch blocks on Redis before it re-checks (it wakes at once on new jobs).
    pub block: Duration,
    /// On shutdown, how long running jobs may take to finish before they are cancelled and
    /// given back to their queue.
    pub grace: Duration,
    /// Dead-letter retention.
    pub dead_retention: DeadRetention,
    /// This worker's consumer name in each queue's group; unique per process by default.
    pub consumer: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            concurrency: 64,
            batch: 256,
            lease: Duration::from_secs(30),
            block: Duration::from_secs(2),
            grace: Duration::from_secs(30),
            dead_retention: DeadRetention::default(),
            consumer: default_consumer(),
        }
    }
}

fn default_consumer() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}:{}:{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// A worker bound to a Redis server and a registry of job types.
///
/// ```no_run
/// # use quern_core::{Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct SendEmail { to: String }
/// # impl Job for SendEmail { const NAME: &'static str = "send_email"; type Resources = ();
/// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
/// # async fn demo() -> Result<(), quern_worker::WorkerError> {
/// use quern_worker::{Registry, Worker};
/// use quern_redis::RedisConfig;
///
/// let worker = Worker::connect(RedisConfig::from_env(), Registry::new().register::<SendEmail>()).await?;
/// worker.run(quern_worker::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    storage: Storage,
    registry: Registry,
    config: WorkerConfig,
    extensions: Extensions,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Redis was unreachable at start, or refused a setup command.
    #[error("the worker could not start")]
    Storage(#[from] StorageError),
    /// Nothing to do.
    #[error("no queues to work: register a job type or name a queue")]
    NoQueues,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Executions that succeeded.
    pub succeeded: u64,
    /// Executions that failed (and were retried or dead-lettered).
    pub failed: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// Jobs given back to their queue at shutdown.
    pub released: u64,
}

#[derive(Default)]
struct Counters {
    succeeded: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    dead: std::sync::atomic::AtomicU64,
}

impl Worker {
    /// Connects to Redis and builds a worker with default settings.
    pub async fn connect(redis: RedisConfig, registry: Registry) -> Result<Self, WorkerError> {
        Ok(Self::new(Storage::connect(redis).await?, registry))
    }

    /// A worker on an existing connection.
    pub fn new(storage: Storage, registry: Registry) -> Self {
        Self {
            storage,
            registry,
            config: WorkerConfig::default(),
            extensions: Extensions::new(),
        }
    }

    /// Replaces the settings.
    #[must_use]
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the settings in place.
    #[must_use]
    pub fn configure(mut self, f: impl FnOnce(&mut WorkerConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Adds configuration that resources read at acquire time (for example a database config).
    #[must_use]
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The storage the worker uses.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Runs until `shutdown` completes, then stops claiming, lets running jobs finish within the
    /// grace period, cancels the rest, and gives every unfinished job back to its queue.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<WorkerReport, WorkerError> {
        crate::executor::install_panic_hook();
        let queues = if self.config.queues.is_empty() {
            self.registry.queues()
        } else {
            self.config.queues.clone()
        };
        if queues.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        let config = Arc::new(self.config);
        let storage = self.storage;
        storage.load_scripts().await?;
        let mut all_keys = Vec::new();
        for q in &queues {
            quern_redis::keys::validate_queue(q).map_err(StorageError::from)?;
            let keys = storage.keys(q);
            storage.ensure_group(&keys).await?;
            all_keys.push(keys);
        }
        tracing::info!(redis = %storage.config().redacted_url(), queues = ?queues, concurrency = config.concurrency,
            consumer = %config.consumer, jobs = ?self.registry.names(), "worker started");

        let soft_stop = Shutdown::new(); // stop claiming; jobs see ctx.is_shutting_down()
        let hard_stop = Shutdown::new(); // cancel running executions
        let background_stop = Shutdown::new(); // renewers, reapers, promoters
        let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let executions = TaskTracker::new();
        let shared = Arc::new(Shared {
            registry: self.registry,
            extensions: Arc::new(self.extensions),
            limits: Limits {
                hard_stop: hard_stop.clone(),
            },
            counters: Counters::default(),
            max_payload: storage.config().max_payload_bytes,
            soft_stop: soft_stop.clone(),
        });

        let mut fetchers = Vec::new();
        let mut settlers = Vec::new();
        let mut background = Vec::new();
        let settle_give_up = Shutdown::new();
        for keys in &all_keys {
            let in_flight = Arc::new(InFlight::default());
            let (tx, rx) = mpsc::unbounded_channel();
            settlers.push(tokio::spawn(settler::run(
                storage.clone(),
                keys.clone(),
                rx,
                in_flight.clone(),
                config.dead_retention,
                settle_give_up.clone(),
            )));
            background.push(tokio::spawn(lease::renew(
                storage.clone(),
                keys.clone(),
                config.consumer.clone(),
                in_flight.clone(),
                config.lease,
                background_stop.clone(),
            )));
            background.push(tokio::spawn(lease::reap(
                storage.clone(),
                keys.clone(),
                config.lease,
                background_stop.clone(),
            )));
            let woken = Arc::new(Notify::new());
            background.push(tokio::spawn(promoter::promote(
                storage.clone(),
                keys.clone(),
                woken.clone(),
                background_stop.clone(),
            )));
            let listener = tokio::spawn(promoter::listen(storage.clone(), keys.clone(), woken));
            let fetcher = Fetcher {
                storage: storage.clone(),
                keys: keys.clone(),
                config: config.clone(),
                semaphore: semaphore.clone(),
                in_flight,
                settle: tx,
                shared: shared.clone(),
                executions: executions.clone(),
            };
            fetchers.push(tokio::spawn(fetcher.run()));
            background.push(listener);
        }

        shutdown.await;
        tracing::info!(
            grace_ms = config.grace.as_millis() as u64,
            "shutting down: no new jobs; waiting for running ones"
        );
        soft_stop.trigger();
        for f in fetchers {
            let _ = f.await;
        }
        executions.close();
        if tokio::time::timeout(config.grace, executions.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: cancelling running jobs; they go back to their queues");
            hard_stop.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(10), executions.wait()).await;
        }
        // Every execution has ended and dropped its sender: the settlers write what is left.
        let settled = async {
            for s in settlers {
                let _ = s.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(15), settled)
            .await
            .is_err()
        {
            settle_give_up.trigger();
        }
        background_stop.trigger();
        for b in background {
            b.abort();
        }
        let mut released = 0;
        for keys in &all_keys {
            match storage.release(keys, &config.consumer).await {
                Ok(n) => {
                    released += n as u64;
                    let _ = storage.delete_consumer(keys, &config.consumer).await;
                }
                Err(e) => tracing::error!(queue = %keys.queue, error = %ErrorChain::of(&e),
                    "could not give jobs back at shutdown; they run again once their lease expires"),
            }
        }
        let c = &shared.counters;
        let report = WorkerReport {
            succeeded: c.succeeded.load(std::sync::atomic::Ordering::Relaxed),
            failed: c.failed.load(std::sync::atomic::Ordering::Relaxed),
            dead: c.dead.load(std::sync::atomic::Ordering::Relaxed),
            released,
        };
        tracing::info!(?report, "worker stopped");
        Ok(report)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

struct Shared {
    registry: Registry,
    extensions: Arc<Extensions>,
    limits: Limits,
    counters: Counters,
    max_payload: usize,
    soft_stop: Shutdown,
}

struct Fetcher {
    storage: Storage,
    keys: QueueKeys,
    config: Arc<WorkerConfig>,
    semaphore: Arc<Semaphore>,
    in_flight: Arc<InFlight>,
    settle: mpsc::UnboundedSender<Settle>,
    shared: Arc<Shared>,
    executions: TaskTracker,
}

impl Fetcher {
    async fn run(self) {
        let stop = self.shared.soft_stop.clone();
        let mut reconnect = Reconnect::new(&self.storage, "reading jobs");
        let mut conn = loop {
            tokio::select! {
                c = self.storage.reader(self.config.block) => match c {
                    Ok(c) => break c,
                    Err(e) => reconnect.failed(&e).await,
                },
                _ = stop.wait() => return,
            }
        };
        loop {
            let first = tokio::select! {
                p = self.semaphore.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = stop.wait() => return,
            };
            let mut permits = vec![first];
            while permits.len() < self.config.batch {
                match self.semaphore.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let read = tokio::select! {
                r = self.storage.read(&mut conn, &self.keys, &self.config.consumer, permits.len(), self.config.block) => r,
                // Anything Redis hands this consumer after this point is given back at shutdown.
                _ = stop.wait() => return,
            };
            match read {
                Ok(deliveries) => {
                    reconnect.succeeded();
                    self.in_flight
                        .insert_all(deliveries.iter().map(|d| d.entry_id.as_str()));
                    for d in deliveries {
                        let permit = permits.pop().expect("never more deliveries than permits");
                        self.spawn(d, permit);
                    }
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") && self.storage.ensure_group(&self.keys).await.is_ok() {
                        // Redis lost the group (restarted without persistence, or keys deleted):
                        // recreated, so read again at once.
                        tracing::warn!(queue = %self.keys.queue, "the consumer group was missing (Redis restarted without persistence?); recreated it");
                        continue;
                    }
                    drop(permits);
                    tokio::select! {
                        _ = reconnect.failed(&e) => {}
                        _ = stop.wait() => return,
                    }
                }
            }
        }
    }

    fn spawn(&self, delivery: Delivery, permit: OwnedSemaphorePermit) {
        let shared = self.shared.clone();
        let queue = self.keys.queue.clone();
        let tx = self.settle.clone();
        self.executions.spawn(async move {
            let op = process(&shared, &queue, delivery).await;
            drop(permit);
            // `None`: cancelled by shutdown; the job stays leased until released to its queue.
            if let Some(op) = op {
                // The settler outlives every execution; a send only fails if it panicked.
                let _ = tx.send(op);
            }
        });
    }
}

/// Decodes, runs and decides the fate of one delivery. `None` means "not settled" (cancelled at
/// shutdown: the job is given back to its queue).
async fn process(shared: &Shared, queue: &str, mut d: Delivery) -> Option<Settle> {
    let entry_id = std::mem::take(&mut d.entry_id);
    let decoded = if d.envelope.is_empty() {
        Err(quern_core::DecodeError::missing_field_e())
    } else {
        decode_envelope(&d.envelope)
    };
    let env = match decoded {
        Ok(env) => env,
        Err(err) => {
            // Best effort: the id and name, when they can be read from the broken text.
            let text = String::from_utf8_lossy(&d.envelope);
            let id = sniff(&text, "id").unwrap_or_else(|| format!("undecodable-{entry_id}"));
            tracing::error!(job.id = %id, job.queue = queue, size = d.envelope.len(), error = %err,
                decode.kind = ?err.kind, decode.line = err.line, decode.column = err.column, decode.offset = err.offset,
                decode.window = %err.window, "job envelope cannot be decoded; dead-lettered");
            let raw = d.foreign_fields.as_deref().map_or(&d.envelope[..], str::as_bytes);
            let mut record = DeadRecord::new(
                id.clone(),
                queue,
                DeadReason::Undecodable,
                format!("envelope cannot be decoded: {err}"),
                raw,
            )
            .with_decode(err);
            record.job = sniff(&text, "job");
            return Some(dead(shared, entry_id, id, record));
        }
    };
    let attempt = env.attempt.saturating_add(d.lease_expiries);
    let span = tracing::info_span!("job", id = %env.id, name = %env.job, queue = queue, attempt);
    async {
        let Some(handler) = shared.registry.get(&env.job) else {
            tracing::error!(job.id = %env.id, job.name = %env.job, job.queue = queue,
                "unknown job type: no job of this name is registered with this worker; dead-lettered");
            let record = DeadRecord::new(env.id.to_string(), queue, DeadReason::UnknownJob,
                format!("unknown job type {:?}: this worker knows {:?}", env.job, shared.registry.names()), &d.envelope)
                .with_envelope(&env, attempt);
            return Some(dead(shared, entry_id, env.id.to_string(), record));
        };
        let options = handler.options();
        let max_attempts = env.max_attempts.unwrap_or(options.max_attempts);
        if d.lease_expiries > 0 && attempt > max_attempts {
            let failure = Failure::new(attempt - 1, "lost", vec![format!(
                "the job's lease expired {} time(s): its worker stopped (killed, or lost Redis) before finishing", d.lease_expiries)]);
            tracing::error!(job.id = %env.id, attempt, max_attempts, "job lost its worker too many times; dead-lettered");
            let record = DeadRecord::new(env.id.to_string(), queue, DeadReason::MaxAttempts,
                format!("attempts exhausted ({max_attempts}): {}", failure.chain.join(": ")), &d.envelope)
                .with_envelope(&env, attempt)
                .with_failure(failure);
            return Some(dead(shared, entry_id, env.id.to_string(), record));
        }
        let payload = env.payload.get();
        if payload.len() > shared.max_payload {
            let err = quern_core::envelope::check_size(payload.as_bytes(), shared.max_payload).expect_err("over the limit");
            return Some(undecodable(shared, queue, entry_id, &env, attempt, &d.envelope, err));
        }
        let ctx = JobContext::from_parts(
            env.id.clone(),
            env.job.clone(),
            queue.to_owned(),
            attempt,
            max_attempts,
            env.enqueued_time(entry_ms(&entry_id)),
            shared.soft_stop.clone(),
        );
        let outcome = handler
            .execute(ctx, payload, shared.extensions.clone(), shared.limits.clone())
            .await;
        let mut backtrace = None;
        let (kind, chain, retryable) = match outcome {
            ExecOutcome::Succeeded => {
                shared.counters.succeeded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(Settle::Ack { entry_id });
            }
            ExecOutcome::Cancelled => {
                tracing::info!("cancelled by shutdown; the job goes back to its queue");
                return None;
            }
            ExecOutcome::Undecodable(err) => {
                return Some(undecodable(shared, queue, entry_id, &env, attempt, &d.envelope, err));
            }
            ExecOutcome::Failed { error, during } => {
                let mut chain = error.chain().0;
                if during != "run" {
                    chain.insert(0, during.to_owned());
                }
                backtrace = error.backtrace().map(ToString::to_string);
                (if during == "run" { "error" } else { "resource" }, chain, error.is_retryable())
            }
            ExecOutcome::Panicked { message, backtrace: bt } => {
                backtrace = bt;
                ("panic", vec![format!("panicked: {message}")], true)
            }
            ExecOutcome::TimedOut { after } => {
                ("timeout", vec![format!("timed out after {} ms", after.as_millis())], true)
            }
        };
        shared.counters.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let failure = Failure::new(attempt, kind, chain);
        let error_chain = failure.chain.join(": caused by: ");
        // Logged once, here, where retry or dead-letter is decided; with a backtrace when one
        // was captured (RUST_BACKTRACE=1).
        let bt = backtrace.as_deref().unwrap_or("");
        if retryable && attempt < max_attempts {
            let delay = options.backoff.delay(attempt);
            let retry_in_ms = delay.as_millis() as u64;
            let attempts_left = max_attempts - attempt;
            if bt.is_empty() {
                tracing::warn!(failure = kind, error.chain = %error_chain, retry_in_ms, attempts_left, "job failed; will retry");
            } else {
                tracing::warn!(failure = kind, error.chain = %error_chain, retry_in_ms, attempts_left, backtrace = %bt, "job failed; will retry");
            }
            let mut next = env.next_attempt(failure);
            next.enqueued_at.get_or_insert(entry_ms(&entry_id));
            Some(Settle::Retry { entry_id, due_ms: now_ms() + retry_in_ms, envelope: next.encode() })
        } else {
            let reason = if retryable { DeadReason::MaxAttempts } else { DeadReason::Permanent };
            if bt.is_empty() {
                tracing::error!(failure = kind, error.chain = %error_chain, reason = reason.describe(), "job failed; dead-lettered");
            } else {
                tracing::error!(failure = kind, error.chain = %error_chain, reason = reason.describe(), backtrace = %bt, "job failed; dead-lettered");
            }
            let message = format!("{}: {}", reason.describe(), error_chain);
            let record = DeadRecord::new(env.id.to_string(), queue, reason, message, &d.envelope)
                .with_envelope(&env, attempt)
                .with_failure(failure);
            Some(dead(shared, entry_id, env.id.to_string(), record))
        }
    }
    .instrument(span)
    .await
}

fn undecodable(
    shared: &Shared,
    queue: &str,
    entry_id: String,
    env: &quern_core::Envelope<'_>,
    attempt: u32,
    raw: &[u8],
    err: quern_core::DecodeError,
) -> Settle {
    tracing::error!(job.id = %env.id, job.name = %env.job, job.queue = queue, payload.size = err.size,
        decode.kind = ?err.kind, decode.path = err.path.as_deref().unwrap_or(""), decode.line = err.line,
        decode.column = err.column, decode.offset = err.offset, decode.window = %err.window,
        error = %err, "job payload cannot be decoded; dead-lettered (retrying cannot fix it)");
    let record = DeadRecord::new(
        env.id.to_string(),
        queue,
        DeadReason::Undecodable,
        format!("payload cannot be decoded: {err}"),
        raw,
    )
    .with_envelope(env, attempt)
    .with_decode(err);
    dead(shared, entry_id, env.id.to_string(), record)
}

/// The string value of `"key":"…"` in text that is not valid JSON as a whole.
fn sniff(text: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let len = text[start..].find('"')?;
    let value = &text[start..start + len];
    (!value.is_empty() && value.len() <= 200 && !value.contains('\\')).then(|| value.to_owned())
}

fn dead(shared: &Shared, entry_id: String, job_id: String, record: DeadRecord) -> Settle {
    shared
        .counters
        .dead
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Settle::Dead {
        entry_id,
        job_id,
        record: record.encode(),
    }
}
