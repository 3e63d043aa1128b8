//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use quern::{RedisConfig, Storage};

/// A storage on the test Redis with a key prefix of its own, so tests run in parallel.
pub async fn storage(url: &str) -> Storage {
    let prefix = test_support::unique_name("qt");
    Storage::connect(RedisConfig::new(url).prefix(prefix))
        .await
        .expect("test Redis reachable")
}

/// Polls `check` every 5 ms until it returns true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running in-process worker and the handle that stops it.
pub struct RunningWorker {
    pub stop: quern::Shutdown,
    pub handle: tokio::task::JoinHandle<Result<quern::WorkerReport, quern::WorkerError>>,
}

impl RunningWorker {
    pub fn start(worker: quern::Worker) -> Self {
        let stop = quern::Shutdown::new();
        let s = stop.clone();
        let handle = tokio::spawn(worker.run(async move { s.wait().await }));
        Self { stop, handle }
    }

    pub async fn stop(self) -> quern::WorkerReport {
        self.stop.trigger();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("worker stops within 60 s")
            .expect("worker task")
            .expect("worker ran")
    }
}

/// Path of a binary built from `examples/` (cargo test builds examples next to the tests).
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

/// Reads a hash of counters written by the `record` job of `examples/worker.rs`.
pub async fn runs(url: &str, key: &str) -> std::collections::HashMap<u64, u64> {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Starts `examples/worker.rs` as a separate process working `queue` under `prefix`, with a 1 s
/// lease (so killed workers' jobs come back fast). Its log level comes from `WORKER_LOG`
/// (default `error`: the planned failures and kills of these tests would flood the output), its
/// log goes to the test's captured output ([`forward_captured`]): shown when the test fails.
pub fn spawn_worker(
    url: &str,
    prefix: &str,
    queue: &str,
    concurrency: usize,
    extra: &[&str],
) -> std::process::Child {
    let concurrency = concurrency.to_string();
    let mut child = std::process::Command::new(example_bin("worker"))
        .args([
            "--prefix",
            prefix,
            "run",
            "--queue",
            queue,
            "--concurrency",
            &concurrency,
            "--lease-secs",
            "1",
        ])
        .args(extra)
        .env("REDIS_URL", url)
        .env(
            "RUST_LOG",
            std::env::var("WORKER_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the example worker");
    forward_captured(&mut child);
    child
}

/// Copies `child`'s stderr, line by line, into the output of the test that started it (on a
/// thread, which inherits the test's output capture): the test harness shows it only when the
/// test fails, and `--nocapture` shows it at once. A child that inherited the test's stderr
/// would print past the capture, into every passing run.
pub fn forward_captured(child: &mut std::process::Child) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    let pid = child.id();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[worker {pid}] {line}");
        }
    });
}

/// The dead records of `queue`, newest first, through the typed admin API.
pub async fn dead_records(storage: &Storage, queue: &str, limit: usize) -> Vec<quern::DeadRecord> {
    quern::Inspector::new(storage.clone())
        .dead_jobs(queue, limit)
        .await
        .expect("listing dead jobs")
        .iter()
        .map(|d| d.parsed().cloned().expect("a dead record Quern wrote parses"))
        .collect()
}

/// The dead record of job `id` on `queue`, if it is dead.
pub async fn dead_record(storage: &Storage, queue: &str, id: &str) -> Option<quern::DeadRecord> {
    quern::Inspector::new(storage.clone())
        .dead_job(id, Some(queue))
        .await
        .expect("reading a dead job")
        .map(|d| d.parsed().cloned().expect("a dead record Quern wrote parses"))
}

/// Every event of a hub received so far, and more on demand, for waiting on one job's events in
/// any order.
pub struct Seen {
    rx: tokio::sync::broadcast::Receiver<quern::Event>,
    log: Vec<quern::Event>,
}

impl Seen {
    /// Starts listening to `events`.
    pub fn new(events: &quern::Events) -> Self {
        Self {
            rx: events.subscribe(),
            log: Vec::new(),
        }
    }

    /// Waits (at most 20 s) for an event of job `id` that `want` accepts: one received before
    /// and not yet taken, or the next that arrives. Each event is taken once.
    pub async fn event(&mut self, id: &str, want: impl Fn(&quern::EventKind) -> bool) -> quern::Event {
        if let Some(i) = self.log.iter().position(|e| &*e.job_id == id && want(&e.kind)) {
            return self.log.remove(i);
        }
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let e = self.rx.recv().await.expect("no event lost");
                if &*e.job_id == id && want(&e.kind) {
                    return e;
                }
                self.log.push(e);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no matching event for job {id} within 20 s"))
    }
}
