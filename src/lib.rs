#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use quern_core::{
    Backoff, DecodeError, DecodeErrorKind, Envelope, ErrorChain, Extensions, Isolation, Job, JobContext,
    JobError, JobId, JobOptions, Outcome, Resource, ResourceContext, Shutdown, redact_url,
};
pub use quern_redis::{
    DeadReason, DeadRecord, Producer, QueueKeys, QueueStats, RedisConfig, Storage, StorageError, TrimReport,
};
pub use quern_worker::{Registry, Worker, WorkerConfig, WorkerError, WorkerReport, cli, shutdown_signal};

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
