//! A worker binary's logs as a log file or a log shipper gets them (stderr piped, not a
//! terminal): no colour codes, JSON lines that carry the job on every line logged inside it, and
//! backtraces of job failures only when `QUERN_BACKTRACE` asks, trimmed to the job's frames.
//!
//! Each test starts `examples/worker.rs` with stderr piped, feeds it jobs of the `record` type
//! (which fail on demand) on a prefix of its own, waits for the log line it needs, stops the
//! worker and reads everything it wrote.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quern::{Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Storage};
use serde::{Deserialize, Serialize};

/// The producer's view of `examples/worker.rs`'s `record` job.
#[derive(Serialize, Deserialize)]
struct Record {
    key: String,
    id: u64,
    sleep_ms: u64,
    fail: Option<String>,
}

impl Job for Record {
    const NAME: &'static str = "record";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("logs")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        unreachable!("run by the example worker")
    }
}

/// A worker process whose stderr lines arrive on a channel, read by a thread.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    /// Starts the example worker on `prefix`'s queue `logs` with `args` before `run` and `envs`.
    fn start(url: &str, prefix: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(common::example_bin("worker"));
        cmd.args(["--prefix", prefix])
            .args(args)
            .args(["run", "--queue", "logs", "--lease-secs", "5"])
            .env("REDIS_URL", url)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .env_remove("QUERN_LOG_FORMAT")
            .env_remove("QUERN_BACKTRACE")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the example worker");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 30 s) for a line that satisfies `want`, and returns it.
    fn wait_for(&mut self, what: &str, mut want: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no log line {what} ({e:?}); the worker wrote:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Stops the worker (SIGTERM, then SIGKILL after 20 s) and returns every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line);
            }
        }
        let _ = self.child.wait();
        // The reader thread ends at EOF: take what it still holds.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// A storage with a prefix of its own, and a producer on it.
async fn setup() -> (String, Storage, Producer) {
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qt_logs");
    let storage = Storage::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .expect("test Redis reachable");
    let producer = Producer::new(storage.clone());
    (url, storage, producer)
}

fn record(storage: &Storage, id: u64, fail: &str) -> Record {
    Record {
        key: format!("{}:runs", storage.config().prefix),
        id,
        sleep_ms: 0,
        fail: Some(fail.to_owned()),
    }
}

async fn cleanup(storage: &Storage) {
    storage.delete_queue(&storage.keys("logs")).await.unwrap();
}

#[tokio::test]
async fn a_piped_log_holds_no_colour_codes_even_without_no_color() {
    let (url, storage, producer) = setup().await;
    let prefix = storage.config().prefix.clone();
    producer.enqueue(&record(&storage, 1, "error")).await.unwrap();
    let mut worker = Worker::start(&url, &prefix, &[], &[]);
    worker.wait_for("saying the job failed", |l| l.contains("job failed"));
    let lines = worker.stop();
    cleanup(&storage).await;
    let text = lines.join("\n");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a piped log:\n{}",
        text.escape_debug()
    );
    assert!(text.contains("worker started"), "{text}");
}

#[tokio::test]
async fn json_lines_carry_the_job_on_every_line_logged_inside_it() {
    let (url, storage, producer) = setup().await;
    let prefix = storage.config().prefix.clone();
    let id = producer.enqueue(&record(&storage, 2, "error")).await.unwrap();
    let mut worker = Worker::start(&url, &prefix, &["--log-format", "json"], &[]);
    worker.wait_for("saying the job is dead", |l| l.contains("dead-lettered"));
    let lines = worker.stop();
    cleanup(&storage).await;
    let mut inside_job = 0;
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line that is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(value.get(key).is_some(), "no {key:?} in {line}");
        }
        let message = value["message"].as_str().unwrap_or_default();
        if message.starts_with("job failed") {
            inside_job += 1;
            assert_eq!(value["job.id"].as_str(), Some(id.as_str()), "{line}");
            assert_eq!(value["job.name"], "record", "{line}");
            assert_eq!(value["job.queue"], "logs", "{line}");
            assert!(value["job.attempt"].as_u64().is_some_and(|a| a >= 1), "{line}");
            assert!(
                value["error.chain"]
                    .as_str()
                    .is_some_and(|c| c.contains("connection refused")),
                "{line}"
            );
        }
    }
    // Every attempt (the example worker's `record` has 10) logged its failure inside the job.
    assert_eq!(inside_job, 10, "{lines:#?}");

    // The variable picks the format too; a bad value is refused before anything runs.
    let mut worker = Worker::start(&url, &prefix, &[], &[("QUERN_LOG_FORMAT", "json")]);
    let started = worker.wait_for("saying the worker started", |l| l.contains("worker started"));
    worker.stop();
    serde_json::from_str::<serde_json::Value>(&started).expect("QUERN_LOG_FORMAT=json gives JSON");
    for (args, envs) in [
        (&["--log-format", "yaml"][..], &[][..]),
        (&[][..], &[("QUERN_LOG_FORMAT", "yaml")][..]),
    ] {
        let out = Command::new(common::example_bin("worker"))
            .args(args)
            .args(["run", "--queue", "logs"])
            .envs(envs.iter().copied())
            .env("REDIS_URL", &url)
            .env("QUERN_PREFIX", &prefix)
            .output()
            .expect("run the example worker");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {envs:?}: {stderr}");
        assert!(
            stderr.contains("yaml") && stderr.contains("text") && stderr.contains("json"),
            "the error names the value and the accepted ones: {stderr}"
        );
    }
}

/// The JSON line saying the job with `id` is dead.
fn dead_line(lines: &[String], id: &str) -> serde_json::Value {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["job.id"] == id && v["message"].as_str().is_some_and(|m| m.contains("dead-lettered")))
        .unwrap_or_else(|| panic!("no dead-letter line for {id}:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn rust_backtrace_alone_logs_no_backtrace() {
    let (url, storage, producer) = setup().await;
    let prefix = storage.config().prefix.clone();
    let permanent = producer.enqueue(&record(&storage, 3, "permanent")).await.unwrap();
    let mut worker = Worker::start(
        &url,
        &prefix,
        &["--log-format", "json"],
        &[("RUST_BACKTRACE", "1")],
    );
    worker.wait_for("saying the job is dead", |l| l.contains("dead-lettered"));
    let lines = worker.stop();
    cleanup(&storage).await;
    let dead = dead_line(&lines, permanent.as_str());
    assert!(dead.get("backtrace").is_none(), "{dead}");
    let text = lines.join("\n");
    assert!(!text.contains("tokio::runtime"), "{text}");
}

#[tokio::test]
async fn quern_backtrace_logs_the_jobs_frames_only() {
    let (url, storage, producer) = setup().await;
    let prefix = storage.config().prefix.clone();
    let permanent = producer.enqueue(&record(&storage, 4, "permanent")).await.unwrap();
    let panicked = producer.enqueue(&record(&storage, 5, "panic")).await.unwrap();
    let mut worker = Worker::start(
        &url,
        &prefix,
        &["--log-format", "json"],
        &[("QUERN_BACKTRACE", "1")],
    );
    let mut dead = 0;
    worker.wait_for("saying both jobs are dead", |l| {
        if l.contains("dead-lettered") {
            dead += 1;
        }
        dead == 2
    });
    let lines = worker.stop();
    cleanup(&storage).await;
    for id in [&permanent, &panicked] {
        let line = dead_line(&lines, id.as_str());
        let bt = line["backtrace"]
            .as_str()
            .unwrap_or_else(|| panic!("no backtrace: {line}"));
        assert!(bt.contains("worker::"), "the job's own frames are kept:\n{bt}");
        assert!(bt.contains("examples/worker.rs"), "with their location:\n{bt}");
        for plumbing in ["tokio::", "std::", "core::", "quern_worker::", "futures_util::"] {
            assert!(
                !bt.lines().any(|l| l
                    .trim_start()
                    .split(": ")
                    .nth(1)
                    .is_some_and(|s| s.starts_with(plumbing))),
                "a {plumbing} frame is kept:\n{bt}"
            );
        }
        assert!(bt.contains("frames hidden"), "says what it dropped:\n{bt}");
        assert!(bt.lines().count() < 20, "trimmed:\n{bt}");
    }
}

/// A backtrace captured inside a tokio task: the trim keeps this file's frames, drops tokio's.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn trimming_a_real_backtrace_keeps_the_callers_frames() {
    #[inline(never)]
    fn capture_here() -> String {
        std::backtrace::Backtrace::force_capture().to_string()
    }
    let full = tokio::spawn(async { capture_here() }).await.unwrap();
    assert!(full.contains("tokio::runtime"), "{full}");
    let trimmed = quern::backtrace::trim(&full);
    assert!(trimmed.contains("logs::"), "{trimmed}");
    assert!(!trimmed.contains("tokio::"), "{trimmed}");
    assert!(trimmed.lines().count() < full.lines().count() / 2, "{trimmed}");
    assert!(trimmed.ends_with("QUERN_BACKTRACE=full shows them)"), "{trimmed}");
}
