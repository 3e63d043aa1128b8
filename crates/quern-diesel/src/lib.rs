//! An isolated diesel-async PostgreSQL pool for each Quern job execution.
//!
//! A job that declares `type Resources = IsolatedPg;` gets a pool built for its execution, on the
//! runtime the execution runs on, and closed when the execution ends, whatever the outcome. A
//! process-wide pool is unsafe when executions run on their own runtimes: tokio-postgres drives
//! every connection from a task on the runtime that opened it, so connections outlive their
//! driver (`connection closed`, or a reconnect on every checkout) or wait on a runtime nobody
//! drives (a hang).
//!
//! The pool is lazy: acquiring it allocates nothing (the settings are resolved once and shared),
//! the first [`IsolatedPg::get`] connects.
//! Every checkout rolls back a transaction left open by raw SQL and pings the connection first;
//! every connection is named `quern:<job-name>:<job-id>` in `pg_stat_activity`.
//!
//! ```no_run
//! use quern_core::{Job, JobContext, JobError};
//! use quern_diesel::IsolatedPg;
//! use quern_diesel::diesel::sql_types::BigInt;
//! use quern_diesel::diesel_async::RunQueryDsl;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct ArchiveSite {
//!     site_id: i64,
//! }
//!
//! impl Job for ArchiveSite {
//!     const NAME: &'static str = "archive_site";
//!     type Resources = IsolatedPg;
//!
//!     async fn run(self, _ctx: &JobContext, res: &mut IsolatedPg) -> Result<(), JobError> {
//!         let mut conn = res.get().await?;
//!         quern_diesel::diesel::sql_query("UPDATE sites SET archived = true WHERE id = $1")
//!             .bind::<BigInt, _>(self.site_id)
//!             .execute(&mut conn)
//!             .await?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! The worker reads a [`PgConfig`] from its `Extensions` (URL, pool size, timeouts); without one
//! it connects to `DATABASE_URL` with the defaults. `DATABASE_URL` is read once per process, when
//! the first execution acquires its `IsolatedPg`.
//!
//! # Layout
//! - [`config`] — [`PgConfig`], the settings every execution's pool is built with.
//! - [`isolated`] — [`IsolatedPg`], the resource, and [`PooledConn`], a checked-out connection.
//! - [`error`] — [`PgError`], with the server named, the password redacted and the cause kept;
//!   [`classify`](error::classify), which makes `?` on a diesel error retry or dead-letter.
//! - `manager`: the deadpool manager: connects on the calling runtime, resets and pings on reuse.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod isolated;
mod manager;

pub use config::PgConfig;
pub use error::PgError;
pub use isolated::{IsolatedPg, PooledConn};

/// The diesel this crate is built against, so queries and connections agree on versions.
pub use diesel;
/// The diesel-async this crate is built against ([`RunQueryDsl`](diesel_async::RunQueryDsl) and
/// friends).
pub use diesel_async;
