//! Quern's core: what a job is, what it may need, and how it travels.
//!
//! This crate knows nothing of Redis or PostgreSQL. Storage (`quern-redis`), resources such as the
//! isolated PostgreSQL pool (`quern-diesel`) and the worker (`quern-worker`) build on it.
//!
//! # Layout
//! - [`job`] — the [`Job`] trait and its per-job policy ([`JobOptions`], [`Isolation`]).
//! - [`error`] — [`JobError`], a failure that keeps its cause chain and says whether to retry;
//!   the [classifiers](error::register_classifier) other crates register for their errors.
//! - [`backtrace`] — [`BacktraceSetting`] (`QUERN_BACKTRACE`) and the [trim](backtrace::trim) of
//!   a job failure's backtrace to the job's own frames.
//! - [`context`] — [`JobContext`], what one execution knows about itself, and [`Shutdown`].
//! - [`resource`] — the [`Resource`] lifecycle (acquire before `run`, release after, on every path).
//! - [`retry`] — [`Backoff`], how long to wait before the next attempt.
//! - [`redact`] — [`redact_url`], for printing connection URLs without passwords.
//! - [`enqueue`] — [`EnqueueOptions`], how one enqueue differs from its job type's defaults.
//! - [`envelope`] — the wire [`Envelope`], job ids, and payload decoding with precise diagnostics.
//! - [`lifecycle`] — [`decide`](lifecycle::decide): an attempt's outcome + the job's policy -> its fate.
//! - [`broker`] — the [`Broker`] trait the worker talks to, the types that cross it, an
//!   in-memory broker, and (feature `contract`) the contract suite every broker passes.
//! - [`events`] — [`Events`], every job transition broadcast to in-process subscribers.
//! - [`clock`] — [`Clock`], "now" for the worker, producer and storage; [`ManualClock`] for tests.
//! - [`dead`] — [`DeadRecord`], what is kept about a dead job. [`state`] — [`JobState`],
//!   [`QueueStats`], [`JobInfo`].
#![forbid(unsafe_code)]

pub mod backtrace;
pub mod broker;
pub mod clock;
pub mod context;
pub mod dead;
pub mod enqueue;
pub mod envelope;
pub mod error;
pub mod events;
pub mod job;
pub mod lifecycle;
pub mod redact;
pub mod resource;
pub mod retry;
pub mod state;

pub use backtrace::BacktraceSetting;
pub use broker::{Broker, BrokerError, Control, DeadRetention, Delivery, Settle, SettleOptions, TrimReport};
pub use clock::{Clock, ManualClock};
pub use context::{JobContext, Shutdown};
pub use dead::{DeadReason, DeadRecord};
pub use enqueue::{EnqueueOptions, Enqueued, Unique, When};
pub use envelope::{DecodeError, DecodeErrorKind, Envelope, Headers, InvalidJobId, JobId, MAX_PAYLOAD_BYTES};
pub use error::{ErrorChain, JobError, Retryability};
pub use events::{Event, EventKind, Events};
pub use job::{Isolation, Job, JobOptions};
pub use lifecycle::{AttemptOutcome, Fate};
pub use redact::redact_url;
pub use resource::{Extensions, Outcome, Resource, ResourceContext};
pub use retry::Backoff;
pub use state::{FinishedRecord, JobInfo, JobState, LeaseInfo, QueueStats};
