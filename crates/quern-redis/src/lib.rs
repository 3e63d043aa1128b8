//! Quern's Redis storage.
//!
//! Jobs live in a Redis Stream per queue, read through one consumer group: a pending entry is a
//! leased job. Delayed jobs and retries wait in sorted sets and are promoted to the stream when
//! due; dead jobs are kept, bounded, with why they died. `docs/wire-format.md` lists every key and
//! the commands a producer in another language sends.
//!
//! [`Storage`] implements [`quern_core::Broker`], the interface the worker talks to, and passes
//! its contract suite (`tests/contract.rs`). The types that cross that interface are core's,
//! re-exported here so users of this crate need not name `quern_core`.
//!
//! # Layout
//! - [`keys`] — every key, built in one place, each queue's keys sharing the hash tag `{queue}`.
//! - [`scripts`] — the Lua scripts, one per state transition (`src/scripts/*.lua`).
//! - [`storage`] — [`Storage`], all Redis I/O of the worker and the producer, one file per
//!   concern: enqueue, claim, settle, lease, promote, trim, health, admin, and the [`Broker`] impl.
//! - `resp` — Quern's own RESP2 client for claims ([`Reader`]) and bulk appends: protocol,
//!   connection, reader, pusher. Never calls back into [`storage`].
//! - `delivery` — builds a [`Delivery`] from one stream entry, and the generic reply parser.
//! - [`producer`] — [`Producer`], the typed client that enqueues jobs. `producer_resource`: a
//!   `Producer` as a job's resource, for jobs that enqueue follow-up jobs.
//! - [`inspector`] — [`Inspector`], the typed admin API: counts, dead jobs, any job by id.
//! - [`error`] — [`StorageError`].
//! - [`acl`] — the least-privilege Redis ACL rules of a producer, a worker and the admin CLI.
#![forbid(unsafe_code)]

pub mod acl;
mod delivery;
pub mod error;
pub mod inspector;
pub mod keys;
pub mod producer;
mod producer_resource;
mod resp;
pub mod scripts;
pub mod storage;

pub use error::StorageError;
pub use inspector::{Cancelled, DeadJob, Inspector, Paused, RetriedDead, RetryDead, StoredRecord};
pub use keys::QueueKeys;
pub use producer::Producer;
pub use quern_core::broker::{
    Broker, BrokerError, DeadRetention, Delivery, Promoted, Settle, SettleOptions, TrimReport,
};
pub use quern_core::{Clock, DeadReason, DeadRecord, JobInfo, JobState, LeaseInfo, QueueStats};
pub use storage::{Fire, PeriodicState, Reader, RedisConfig, ServerHealth, Storage};

/// The pure RESP parser, for fuzz targets; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::Delivery;
    use crate::resp::protocol::{self, Parsed, ReadReply};

    /// An `XREADGROUP` reply: `None` when incomplete, `Err` with the server's error line or why
    /// the bytes are not a reply.
    pub fn parse_read_reply(buf: &[u8]) -> Option<Result<Vec<Delivery>, String>> {
        match protocol::parse_read_reply(buf) {
            Parsed::Done((ReadReply::Deliveries(d), _)) => Some(Ok(d)),
            Parsed::Done((ReadReply::ServerError(line), _)) => Some(Err(line)),
            Parsed::Incomplete => None,
            Parsed::Bad(detail) => Some(Err(detail)),
        }
    }

    /// The same reply read the generic way: redis-rs's parser, then the conversion the TLS path
    /// uses (`delivery::parse_read`). `None` when redis-rs does not read one complete reply.
    pub fn parse_read_reply_generic(buf: &[u8]) -> Option<Result<Vec<Delivery>, String>> {
        let value = redis::parse_redis_value(buf).ok()?;
        Some(crate::delivery::parse_read(value).map_err(|e| e.to_string()))
    }

    /// `n` simple replies: `None` when incomplete, else the first error line (if any) and the
    /// bytes used, or `Err` with why the bytes are not replies.
    pub fn parse_replies(buf: &[u8], n: usize) -> Option<Result<(Option<String>, usize), String>> {
        match protocol::parse_replies(buf, n) {
            Parsed::Done(done) => Some(Ok(done)),
            Parsed::Incomplete => None,
            Parsed::Bad(detail) => Some(Err(detail)),
        }
    }
}
