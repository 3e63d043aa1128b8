//! Quern's worker and command line.
//!
//! # Layout
//! - [`registry`] — [`Registry`], the job types a worker knows by name.
//! - [`worker`] — [`Worker`], the fetch loop (claims jobs in batches), execution and shutdown.
//! - `executor`: one execution: resources, timeout, panics, isolation.
//! - `settler`: writes results in batches. `lease`: renews leases, requeues expired ones.
//!   `promoter`: moves delayed jobs and retries to the queue when due.
//! - [`cli`] — the `run`, `stats`, `enqueue`, `dead` and `job` commands for a worker binary.
#![forbid(unsafe_code)]

mod backoff;
pub mod cli;
mod executor;
mod in_flight;
mod lease;
mod promoter;
pub mod registry;
mod settler;
pub mod worker;

pub use registry::Registry;
pub use worker::{Worker, WorkerConfig, WorkerError, WorkerReport, shutdown_signal};
