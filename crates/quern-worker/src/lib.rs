//! Quern's worker and command line.
//!
//! # Layout
//! - [`registry`] — [`Registry`], the job types a worker knows by name.
//! - [`worker`] — [`Worker`] (generic over its broker), its config, the fetcher (claims jobs in
//!   batches) and the start/shutdown sequence.
//! - `pipeline`: one delivery, from decoding to its outcome. `fate`: the outcome, through the
//!   lifecycle model, to a settle op, an event and one log line.
//! - [`middleware`] — tower layers around every execution.
//! - `executor`: one execution: resources, timeout, panics, isolation. `panic`: the panic hook.
//!   `watchdog`: notices a job that holds its thread, and says so once.
//! - `settler`: writes results in batches. `lease`: renews leases, requeues expired ones.
//!   `promoter`: moves delayed jobs and retries to the queue when due.
//! - [`periodic`] — periodic (cron) schedules declared on the registry, fired without a leader.
//! - [`testing`] — helpers for applications' tests: run one job through the real executor,
//!   a namespace of a test's own on a real Redis, assertions on what is enqueued, drain.
//! - `cli` (feature `cli`, on by default) — the `run`, `stats`, `enqueue`, `dead` and `job`
//!   commands for a worker binary.
#![forbid(unsafe_code)]

mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
mod control;
mod executor;
mod fate;
mod in_flight;
mod lease;
pub mod middleware;
mod panic;
pub mod periodic;
mod pipeline;
mod promoter;
pub mod registry;
mod settler;
pub mod testing;
mod watchdog;
pub mod worker;

pub use quern_core::events::{Event, EventKind, Events};

pub use registry::Registry;
pub use worker::{Worker, WorkerConfig, WorkerError, WorkerReport, shutdown_from, shutdown_signal};
