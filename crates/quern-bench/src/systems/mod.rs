//! The systems under test: one adapter per queue, behind the [`System`] trait.
//!
//! An adapter does only the queue-specific part of a workload (push jobs, run a worker until N
//! jobs were handled). Timing, CPU, RSS, Redis memory and statistics live in `runner`, so every
//! system is measured by the same code.
//!
//! To add a system: implement [`System`] in a module here and add its arm in `runner::run_child`.

use std::time::Duration;

use anyhow::Result;

use crate::model::{Sizes, SystemName, Workload};

pub mod apalis;
pub mod bullmq;
pub mod chasquimq;
pub mod isolated_pg;
pub mod quern;
pub mod redis_limit;

/// What every run of every system knows.
#[derive(Debug, Clone)]
pub struct Env {
    /// Redis URL.
    pub redis_url: String,
    /// Unique, glob-safe tag of this run: every key the run creates contains it.
    pub tag: String,
    /// Workload sizes.
    pub sizes: Sizes,
}

impl Env {
    /// A queue/prefix name unique to this run (`qbench-<tag>`).
    pub fn queue(&self) -> String {
        format!("qbench-{}", self.tag)
    }

    /// SCAN patterns that match every key this run may have created, for any system.
    pub fn key_patterns(&self) -> Vec<String> {
        vec![
            format!("qbench-{}*", self.tag),
            format!("{{chasqui:qbench-{}}}*", self.tag),
        ]
    }
}

/// Where a job arrived in a handler: its sequence number and when the handler saw it.
pub type Arrival = (u64, std::time::Instant);

/// A queue system driven through its own public API.
///
/// Each method is called on a fresh instance in its own child process; `cleanup` is always
/// called afterwards (and the parent deletes the run's keys again by prefix).
pub trait System: Sized {
    /// The system's name.
    const NAME: SystemName;

    /// Why this system cannot run here, if it cannot (checked before connecting).
    async fn unsupported(_env: &Env, _workload: Workload) -> Option<String> {
        None
    }

    /// Connects (queues, producers, connections) for one run.
    async fn connect(env: &Env) -> Result<Self>;

    /// Enqueues the job `{"n":i}` and waits for the system to confirm it (the runner times
    /// each call for `enqueue_single`).
    async fn enqueue_one(&mut self, i: u64) -> Result<()>;

    /// Enqueues `n` jobs through the system's bulk API (the best batching it offers).
    async fn enqueue_bulk(&mut self, n: usize) -> Result<()>;

    /// Runs a worker with `concurrency` until `n` already-enqueued jobs were handled by a
    /// no-op handler (which parses the payload), or fails after `bound`.
    async fn process(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()>;

    /// Starts an idle worker, then enqueues `n` jobs one after another with random 1-20 ms
    /// gaps, each after the previous one arrived; returns enqueue-to-handler latencies.
    async fn pickup_latency(&mut self, n: usize, bound: Duration) -> Result<Vec<Duration>>;

    /// Producers and a worker with `concurrency` at once for `secs`; returns jobs handled in that time.
    async fn sustained(&mut self, secs: u64, concurrency: usize) -> Result<u64>;

    /// What `redis_memory` measures for this system: the Redis memory `n` of these take.
    const MEMORY_OF: &'static str = "pending jobs";

    /// What `redis_memory` stores `n` of (by default, `n` pending jobs: `enqueue_bulk`).
    async fn fill_for_memory(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()> {
        let _ = (concurrency, bound);
        self.enqueue_bulk(n).await
    }

    /// A note to print next to this system's figures of `workload` (its configuration).
    fn note(_workload: Workload) -> String {
        String::new()
    }

    /// Stops workers and deletes this run's keys.
    async fn cleanup(&mut self) -> Result<()>;
}

/// Pickup-latency driver shared by the adapters: `enqueue(i)` enqueues job i; arrivals come on `rx`.
pub async fn drive_pickup<F, Fut>(
    n: usize,
    bound: Duration,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
    mut enqueue: F,
) -> Result<Vec<Duration>>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use rand::Rng;
    let deadline = tokio::time::Instant::now() + bound;
    let mut out = Vec::with_capacity(n);
    // Let the worker reach its idle wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..n as u64 {
        let sent = std::time::Instant::now();
        enqueue(i).await?;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left.min(Duration::from_secs(35)), rx.recv()).await {
                Ok(Some((m, at))) if m == i => {
                    out.push(at.saturating_duration_since(sent));
                    break;
                }
                Ok(Some(_)) => continue, // a duplicate delivery of an earlier job
                Ok(None) => anyhow::bail!("worker stopped after {i} jobs"),
                Err(_) => anyhow::bail!("job {i} not picked up in time ({} done)", out.len()),
            }
        }
        let gap = rand::rng().random_range(1..=20);
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    Ok(out)
}

/// Sustained-load window: producers keep at most this many jobs enqueued but not yet handled
/// (keeps apalis-redis below the ~8,000 due-at-once limit, and measures throughput, not backlog growth).
pub const SUSTAINED_WINDOW: u64 = 4_000;
