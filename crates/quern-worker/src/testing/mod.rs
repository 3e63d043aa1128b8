//! Helpers for testing an application's jobs against the real executor and a real Redis — no
//! global fake, no "inline" mode that behaves differently from production.
//!
//! - [`perform`] / [`Performer`]: run one job through the worker's own executor (JSON round
//!   trip of the payload, resources, middleware, timeout, panics) and get a [`Performed`]: how
//!   it ended and what a worker would do with it next. No Redis needed.
//! - [`Namespace`]: a key prefix of its own on a real Redis (`REDIS_URL`, the local server, or a
//!   private `redis-server` started for the test process), with a producer, an inspector and a
//!   [`ManualClock`](quern_core::ManualClock). Each test gets its own, so tests run in parallel;
//!   its keys are deleted when it is dropped. On it: [`Namespace::enqueued`],
//!   [`Namespace::assert_enqueued`] (exactly one by default), [`Namespace::assert_not_enqueued`],
//!   and [`Namespace::drain`], which runs a real [`Worker`](crate::Worker) until nothing is due.
//! - [`RedisServer`]: a private `redis-server` on a free port, for tests that stop or restart
//!   Redis; [`redis_url`]: the server tests share.
//!
//! ```
//! # use quern_core::{Job, JobContext, JobError, JobOptions};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Welcome { user: u64 }
//! # impl Job for Welcome { const NAME: &'static str = "welcome"; type Resources = ();
//! #   fn options() -> JobOptions { JobOptions::new().queue("mail") }
//! #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use quern_worker::testing::Namespace;
//!
//! let ns = Namespace::new(quern_worker::Registry::new().register::<Welcome>()).await;
//! ns.producer().enqueue_in(&Welcome { user: 7 }, Duration::from_secs(3600)).await.unwrap();
//! ns.assert_enqueued::<Welcome>(|w| w.user == 7).await;
//!
//! assert_eq!(ns.drain().await.executions, 0, "not due yet");
//! ns.clock().advance(Duration::from_secs(3600));
//! assert_eq!(ns.drain().await.succeeded, 1);
//! ns.assert_not_enqueued::<Welcome>(|_| true).await;
//! # }
//! ```
//!
//! # Layout
//! - `perform` — [`perform`], [`Performer`], [`Performed`].
//! - `namespace` — [`Namespace`]: prefix, storage, producer, clock, worker, cleanup.
//! - `enqueued` — reading back and asserting on what waits in the namespace's queues.
//! - `drain` — [`Namespace::drain`] and its [`Drained`] summary.
//! - `server` — [`RedisServer`]; `process` — ports, bounded waits, the watchdog (shared with
//!   Quern's own test-support crate; not a stable API).

use std::sync::OnceLock;
use std::time::Duration;

mod drain;
mod enqueued;
mod namespace;
mod perform;
#[doc(hidden)]
pub mod process;
mod server;

pub use drain::{DrainLimit, DrainStopped, Drained};
pub use namespace::Namespace;
pub use perform::{Performed, Performer, perform};
pub use server::{REDIS_SERVER_ENV, RedisServer};

/// The Redis that tests share when they do not stop the server.
///
/// In order: `$REDIS_URL` if set and not empty; `redis://127.0.0.1:6379` if a PING there is
/// answered within ~300 ms; otherwise a private [`RedisServer`] started once per test process
/// (lazily, thread-safe), killed by a watchdog when the process exits. It blocks while it looks
/// (call it from `spawn_blocking` in async code, as [`Namespace::new`] does).
///
/// # Panics
/// When none of them is available: the message says to install `redis-server` or set
/// `REDIS_URL`.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    static PRIVATE: OnceLock<RedisServer> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var("REDIS_URL").ok().filter(|v| !v.trim().is_empty()) {
            return url;
        }
        if server::ping(6379, Duration::from_millis(300)) {
            return "redis://127.0.0.1:6379".to_owned();
        }
        PRIVATE.get_or_init(RedisServer::start).url()
    })
    .clone()
}
