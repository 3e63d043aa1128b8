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
            dead_retention: DeadRetention::default(),
            consumer: default_consumer(),
            capture_panics: true,
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
