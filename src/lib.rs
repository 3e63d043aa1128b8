#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

/// An in-memory broker for unit tests: it passes the same contract suite as Redis.
pub use quern_core::broker::memory::MemoryBroker;
pub use quern_core::{
    AttemptOutcome, Backoff, BacktraceSetting, Broker, Clock, DecodeError, DecodeErrorKind, EnqueueOptions,
    Enqueued, Envelope, ErrorChain, Event, EventKind, Events, Extensions, Fate, FinishedRecord, Headers,
    InvalidJobId, Isolation, Job, JobContext, JobError, JobId, JobInfo, JobOptions, JobState, ManualClock,
    Outcome, Resource, ResourceContext, Retryability, Shutdown, Unique, When, backtrace, lifecycle,
    redact_url,
};
pub use quern_redis::{
    Cancelled, DeadJob, DeadReason, DeadRecord, Inspector, Paused, Producer, QueueKeys, QueueStats,
    RedisConfig, RetryDead, Storage, StorageError, StoredRecord, TrimReport,
};
/// The command line of a worker binary (feature `cli`, on by default).
#[cfg(feature = "cli")]
pub use quern_worker::cli;
pub use quern_worker::{
    Registry, Worker, WorkerConfig, WorkerError, WorkerReport, middleware, shutdown_from, shutdown_signal,
};

/// The isolated diesel-async PostgreSQL pool (feature `diesel`, on by default).
#[cfg(feature = "diesel")]
pub use quern_diesel as diesel;
#[cfg(feature = "diesel")]
pub use quern_diesel::{IsolatedPg, PgConfig};

/// The parts, for what the facade does not re-export.
pub mod parts {
    pub use quern_core as core;
    pub use quern_redis as redis;
    pub use quern_worker as worker;
}

/// Helpers for an application's own tests: [`testing::perform`] one job through the real
/// executor, a [`testing::Namespace`] of a test's own on a real Redis, `assert_enqueued`,
/// `drain` (see the README's "Test your jobs").
pub use quern_worker::testing;

/// Periodic (cron) schedules, declared with [`Registry::periodic`].
pub use quern_worker::periodic::{self, MissedRuns, Overlap, Periodic, PeriodicError};

/// Re-exported so that code calling Quern needs no dependency of its own for them. The derive
/// macros (`#[derive(Serialize, Deserialize)]`) and tokio's attribute macros
/// (`#[tokio::main]`, `#[tokio::test]`) still need `serde` and `tokio` in the application's own
/// `Cargo.toml`: the README's "Add Quern" says which lines.
pub use serde;
/// See [`serde`].
pub use serde_json;
/// See [`serde`].
pub use tokio;
