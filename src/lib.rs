#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

/// An in-memory broker for unit tests: it passes the same contract suite as Redis.
pub use quern_core::broker::memory::MemoryBroker;
pub use quern_core::{
    AttemptOutcome, Backoff, BacktraceSetting, Broker, Clock, DecodeError, DecodeErrorKind, Envelope,
    ErrorChain, Event, EventKind, Events, Extensions, Fate, Isolation, Job, JobContext, JobError, JobId,
    JobInfo, JobOptions, JobState, ManualClock, Outcome, Resource, ResourceContext, Retryability, Shutdown,
    backtrace, lifecycle, redact_url,
};
pub use quern_redis::{
    DeadJob, DeadReason, DeadRecord, Inspector, Producer, QueueKeys, QueueStats, RedisConfig, RetryDead,
    Storage, StorageError, StoredRecord, TrimReport,
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
