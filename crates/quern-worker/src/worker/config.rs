//! Worker settings.

use std::time::Duration;

use quern_core::DeadRetention;

/// Worker settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Queues to work; empty means the queues of the registered job types.
    pub queues: Vec<String>,
    /// Most executions running at once, across all queues.
    pub concurrency: usize,
    /// Most jobs claimed in one round trip.
    pub batch: usize,
    /// How long a claimed job stays leased without renewal. A worker killed mid-job has its jobs
    /// run elsewhere after this long.
    pub lease: Duration,
    /// How long an idle fetch blocks on Redis before it re-checks (it wakes at once on new jobs).
    pub block: Duration,
    /// On shutdown, how long running jobs may take to finish before they are cancelled and
    /// given back to their queue.
    pub grace: Duration,
    /// Dead-letter retention.
    pub dead_retention: DeadRetention,
    /// This worker's consumer name in each queue's group; unique per process by default.
    pub consumer: String,
    /// Install Quern's process-wide panic hook at start (default true), so a panic inside a job
    /// is recorded with its location and logged once with the job's id instead of printed.
    /// Turn it off if the application manages the panic hook itself: panics are still caught
    /// and recorded, without their location.
    pub capture_panics: bool,
    /// Run the worker's own tasks — claiming, settling, renewing and requeueing leases,
    /// promoting due jobs — on a runtime of their own, on a thread of their own, with their own
    /// connections (default true). Jobs still run on the runtime that calls
    /// [`Worker::run`](crate::Worker::run). A job that blocks its thread then cannot freeze the
    /// worker: leases are kept, other jobs are claimed and their results written.
    ///
    /// `false` runs everything on the caller's runtime, as one task tree: for tests on paused
    /// time (`tokio::time::pause`), which a runtime of its own does not follow. There, a job
    /// that blocks a thread can stall the worker, its leases expire and its jobs run elsewhere.
    pub own_runtime: bool,
    /// How long one poll of a job's `run` may hold its thread before the worker logs it (once per
    /// execution, with the job's id) and counts it in [`WorkerReport::blocked`](crate::WorkerReport);
    /// `None` turns the watchdog off. Jobs with `Isolation::Runtime` have a thread of their own
    /// and are not watched. The watchdog runs on the worker's own runtime (see
    /// [`own_runtime`](Self::own_runtime)): without it, it may be blocked too.
    pub watchdog: Option<Duration>,
    /// How long a running job that was cancelled may take to stop on its own (it sees
    /// [`JobContext::is_cancelled`](quern_core::JobContext::is_cancelled)) before the worker
    /// stops it (default 10 s). Either way it ends as cancelled, never retried.
    pub cancel_grace: Duration,
    /// How often the worker asks the broker whether its queues are paused and whether any job
    /// it runs was cancelled (default 1 s): a pause or a cancel takes effect within this long
    /// (a fetch already waiting for jobs may still take one more batch).
    pub control_poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            concurrency: 64,
            batch: 256,
            lease: Duration::from_secs(30),
            block: Duration::from_secs(2),
            grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(10),
            control_poll: Duration::from_secs(1),
            dead_retention: DeadRetention::default(),
            consumer: default_consumer(),
            capture_panics: true,
            own_runtime: true,
            watchdog: Some(Duration::from_secs(1)),
        }
    }
}

fn default_consumer() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}:{}:{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}
