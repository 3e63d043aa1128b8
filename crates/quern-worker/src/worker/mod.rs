//! The worker: claims jobs in batches, runs them under a concurrency limit, settles them, keeps
//! their leases, and shuts down without losing any.
//!
//! # Layout
//! - `config` — [`WorkerConfig`].
//! - `fetcher` — claims a queue's jobs as slots free up and starts their executions.
//! - `run` — starts the worker's own runtime and every component per queue on it, then the
//!   shutdown sequence.
//!
//! The worker is generic over its [`Broker`] (Redis by default): every component talks to the
//! trait, so the same worker runs on the in-memory broker in tests.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use quern_core::{Broker, Clock, Events, Extensions, Shutdown};
use quern_redis::{RedisConfig, Storage, StorageError};

use crate::executor::Limits;
use crate::middleware::{BoxedService, Execution, Layer, Service, Stack};
use crate::registry::Registry;

mod config;
mod fetcher;
mod run;

pub use config::WorkerConfig;
pub(crate) use quern_redis::keys::entry_ms;

/// A worker bound to a broker (Redis by default) and a registry of job types.
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
pub struct Worker<B: Broker = Storage> {
    broker: B,
    registry: Registry,
    config: WorkerConfig,
    extensions: Extensions,
    stack: Stack,
    events: Events,
    clock: Clock,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Redis was unreachable at start, or refused a setup command.
    #[error("the worker could not start")]
    Storage(#[from] StorageError),
    /// The broker was unreachable at start, or refused a setup command.
    #[error("the worker could not start")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Nothing to do.
    #[error("no queues to work: register a job type or name a queue")]
    NoQueues,
    /// Jobs this worker would run cannot get their resources with its configuration.
    #[error("the worker cannot run some of its jobs: {}", .0.join("; "))]
    Misconfigured(Vec<String>),
    /// The worker's own runtime (see [`WorkerConfig::own_runtime`]) could not be started.
    #[error("the worker could not start its runtime")]
    Runtime(#[source] std::io::Error),
}

impl WorkerError {
    fn broker<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        match boxed.downcast::<StorageError>() {
            Ok(storage) => WorkerError::Storage(*storage),
            Err(other) => WorkerError::Broker(other),
        }
    }
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
    /// Claimed jobs not started because their lease ran out before they could (another copy
    /// runs).
    pub stale: u64,
    /// Executions the watchdog found holding their thread (see [`WorkerConfig::watchdog`]).
    pub blocked: u64,
    /// Jobs that ended cancelled while this worker ran them.
    pub cancelled: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub dead: AtomicU64,
    pub stale: AtomicU64,
    pub cancelled: AtomicU64,
}

/// What every execution of a worker shares.
pub(crate) struct Shared {
    pub registry: Registry,
    pub extensions: Arc<Extensions>,
    pub limits: Limits,
    pub counters: Counters,
    pub max_payload: usize,
    pub soft_stop: Shutdown,
    pub stack: Stack,
    pub events: Events,
    pub clock: Clock,
    pub lease: Duration,
}

impl Worker<Storage> {
    /// Connects to Redis and builds a worker with default settings.
    pub async fn connect(redis: RedisConfig, registry: Registry) -> Result<Self, WorkerError> {
        Ok(Self::new(Storage::connect(redis).await?, registry))
    }

    /// The storage the worker uses.
    pub fn storage(&self) -> &Storage {
        &self.broker
    }
}

impl<B: Broker> Worker<B> {
    /// A worker on an existing broker (a connected `Storage`, or an in-memory broker in tests).
    pub fn new(broker: B, registry: Registry) -> Self {
        Self {
            broker,
            registry,
            config: WorkerConfig::default(),
            extensions: Extensions::new(),
            stack: Stack::default(),
            events: Events::default(),
            clock: Clock::system(),
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

    /// Wraps every execution in `layer` (see [`middleware`](crate::middleware)); the layer added
    /// last is the outermost.
    #[must_use]
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxedService>,
        L::Service: Service<Execution, Response = quern_core::AttemptOutcome, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Execution>>::Future: Send + 'static,
    {
        self.stack = self.stack.push(layer);
        self
    }

    /// Emits this worker's job transitions to `events` (subscribe before [`run`](Self::run)).
    #[must_use]
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The hub this worker emits its job transitions to.
    pub fn event_hub(&self) -> &Events {
        &self.events
    }

    /// Reads "now" from `clock` (due times, retries, dead records): a `ManualClock`'s in tests.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The broker the worker uses.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// What an execution of this worker runs with, for `testing::Performer::of`.
    pub(crate) fn execution_parts(&self) -> (&Registry, &Extensions, &Stack, &Clock, &WorkerConfig) {
        (
            &self.registry,
            &self.extensions,
            &self.stack,
            &self.clock,
            &self.config,
        )
    }

    /// Runs until `shutdown` completes, then stops claiming, lets running jobs finish within the
    /// grace period, cancels the rest, and gives every unfinished job back to its queue.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<WorkerReport, WorkerError> {
        run::run(self, shutdown).await
    }
}

/// A future that completes when `s` fires: the `shutdown` of [`Worker::run`] (or the CLI's
/// `execute`) in tests.
pub fn shutdown_from(s: &Shutdown) -> impl Future<Output = ()> + Send + 'static {
    let s = s.clone();
    async move { s.wait().await }
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
