//! Quern's Redis storage.
//!
//! Jobs live in a Redis Stream per queue, read through one consumer group: a pending entry is a
//! leased job. Delayed jobs and retries wait in sorted sets and are promoted to the stream when
//! due; dead jobs are kept, bounded, with why they died. `docs/wire-format.md` lists every key and
//! the commands a producer in another language sends.
//!
//! # Layout
//! - [`keys`] — every key, built in one place, each queue's keys sharing the hash tag `{queue}`.
//! - [`scripts`] — the Lua scripts, one per state transition (`src/scripts/*.lua`).
//! - [`storage`] — [`Storage`], all Redis I/O: enqueue, read, settle, renew, recover, admin.
//! - [`producer`] — [`Producer`], the typed client that enqueues jobs.
//! - [`record`] — [`DeadRecord`], what is kept about a dead job.
//! - [`error`] — [`StorageError`].
#![forbid(unsafe_code)]

pub mod error;
pub mod keys;
pub mod producer;
pub mod reader;
pub mod record;
pub mod scripts;
pub mod storage;

pub use error::StorageError;
pub use keys::QueueKeys;
pub use producer::Producer;
pub use reader::Reader;
pub use record::{DeadReason, DeadRecord};
pub use storage::{DeadRetention, Delivery, JobState, QueueStats, RedisConfig, Settle, Storage, TrimReport};
