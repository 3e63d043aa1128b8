//! Quern's core: what a job is, what it may need, and how it travels.
//!
//! This crate knows nothing of Redis or PostgreSQL. Storage (`quern-redis`), resources such as the
//! isolated PostgreSQL pool (`quern-diesel`) and the worker (`quern-worker`) build on it.
//!
//! # Layout
//! - [`job`] — the [`Job`] trait and its per-job policy ([`JobOptions`], [`Isolation`]).
//! - [`error`] — [`JobError`], a failure that keeps its cause chain and says whether to retry.
//! - [`context`] — [`JobContext`], what one execution knows about itself, and [`Shutdown`].
//! - [`resource`] — the [`Resource`] lifecycle (acquire before `run`, release after, on every path).
//! - [`retry`] — [`Backoff`], how long to wait before the next attempt.
//! - [`redact`] — [`redact_url`], for printing connection URLs without passwords.
//! - [`envelope`] — the wire [`Envelope`], job ids, and payload decoding with precise diagnostics.
#![forbid(unsafe_code)]

pub mod context;
pub mod envelope;
pub mod error;
pub mod job;
pub mod redact;
pub mod resource;
pub mod retry;

pub use context::{JobContext, Shutdown};
pub use envelope::{DecodeError, DecodeErrorKind, Envelope, JobId, MAX_PAYLOAD_BYTES};
pub use error::{ErrorChain, JobError};
pub use job::{Isolation, Job, JobOptions};
pub use redact::redact_url;
pub use resource::{Extensions, Outcome, Resource, ResourceContext};
pub use retry::Backoff;
