//! Quickstart: define a job, enqueue 1,000, run a worker until all are done, print a summary.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Uses `REDIS_URL` (default `redis://127.0.0.1:6379`). When nothing answers there and
//! `REDIS_URL` is not set, it starts a private `redis-server` for the demo
//! (`quern::testing::RedisServer`).
//!
//! Its tests (`cargo test --example quickstart`) show `quern::testing`: one job through the real
//! executor, and a worker draining a namespace of the test's own on a real Redis.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quern::{Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Registry, Storage, Worker};
use serde::{Deserialize, Serialize};

/// The job: a serde struct with a stable name and an async `run`.
#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order_id: u64,
    email: String,
}

static SENT: AtomicU64 = AtomicU64::new(0);
static DONE: tokio::sync::Notify = tokio::sync::Notify::const_new();

impl Job for SendReceipt {
    const NAME: &'static str = "send_receipt";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new()
            .queue("quickstart")
            .max_attempts(3)
            .timeout(Duration::from_secs(10))
    }

    async fn run(self, _ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        // A real job would talk to a mail service here.
        if self.email.is_empty() {
            return Err(JobError::permanent("order has no email address"));
        }
        if SENT.fetch_add(1, Ordering::SeqCst) + 1 == TOTAL {
            DONE.notify_one();
        }
        Ok(())
    }
}

const TOTAL: u64 = 1_000;

#[tokio::main]
async fn main() -> ExitCode {
    quern::cli::init_tracing();
    // Keeps a private server (if one was needed) alive until the end of main.
    let (url, _private) = match redis_url().await {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let config = RedisConfig::new(&url).prefix("quern-quickstart");
    let storage = match Storage::connect(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", quern::ErrorChain::of(&e));
            return ExitCode::FAILURE;
        }
    };
    let keys = storage.keys("quickstart");
    storage.delete_queue(&keys).await.expect("clean the demo queue");

    let started = Instant::now();
    let producer = Producer::new(storage.clone());
    let jobs: Vec<SendReceipt> = (0..TOTAL)
        .map(|order_id| SendReceipt {
            order_id,
            email: format!("buyer{order_id}@example.com"),
        })
        .collect();
    producer.enqueue_many(&jobs).await.expect("enqueue");
    let enqueued = started.elapsed();

    let worker = Worker::new(storage.clone(), Registry::new().register::<SendReceipt>());
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop_signal = stop.clone();
    let running = tokio::spawn(worker.run(async move { stop_signal.notified().await }));
    if tokio::time::timeout(Duration::from_secs(60), DONE.notified())
        .await
        .is_err()
    {
        eprintln!("error: not all jobs finished within 60 s");
    }
    stop.notify_one();
    let report = running.await.expect("worker task").expect("worker");
    let stats = storage.stats(&keys).await.expect("stats");
    println!(
        "quickstart: {} done, {} failed, {} dead in {:.1} ms (enqueue {:.1} ms) against {}",
        report.succeeded,
        report.failed,
        stats.dead,
        started.elapsed().as_secs_f64() * 1e3,
        enqueued.as_secs_f64() * 1e3,
        storage.config().redacted_url(),
    );
    storage.delete_queue(&keys).await.expect("clean up");
    if report.succeeded == TOTAL {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `REDIS_URL`, or the default if a server answers there, or a private server for the demo.
async fn redis_url() -> Result<(String, Option<quern::testing::RedisServer>), String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let default = "redis://127.0.0.1:6379".to_owned();
    if Storage::connect(RedisConfig::new(&default)).await.is_ok() {
        return Ok((default, None));
    }
    let has_binary = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !has_binary {
        return Err(format!(
            "no Redis answers at {default} and `redis-server` is not installed: install it \
             (`apt-get install redis-server`, `brew install redis`) or set REDIS_URL to a running server"
        ));
    }
    eprintln!("no Redis answers at {default}: starting a private redis-server for this demo");
    let server = tokio::task::spawn_blocking(quern::testing::RedisServer::start)
        .await
        .map_err(|e| format!("starting redis-server: {e}"))?;
    Ok((server.url(), Some(server)))
}

#[cfg(test)]
mod tests {
    use quern::testing::{Namespace, perform};

    use super::*;

    #[tokio::test]
    async fn a_receipt_without_an_email_is_dead_at_once() {
        let performed = perform(&SendReceipt {
            order_id: 1,
            email: String::new(),
        })
        .await;
        assert_eq!(performed.chain(), ["order has no email address"]);
        assert!(performed.is_dead() && !performed.is_retryable());
    }

    #[tokio::test]
    async fn enqueued_receipts_are_sent_and_bad_ones_dead_lettered() {
        let ns = Namespace::new(Registry::new().register::<SendReceipt>()).await;
        let receipts = [
            SendReceipt {
                order_id: 1,
                email: "a@example.com".into(),
            },
            SendReceipt {
                order_id: 2,
                email: String::new(),
            },
        ];
        ns.producer().enqueue_many(&receipts).await.unwrap();
        ns.assert_enqueued::<SendReceipt>(|r| r.order_id == 2).await;

        let drained = ns.drain().await;
        assert_eq!((drained.succeeded, drained.dead), (1, 1), "{drained:?}");
        ns.assert_not_enqueued::<SendReceipt>(|_| true).await;
        let dead = ns.inspector().dead_jobs("quickstart", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
    }
}
