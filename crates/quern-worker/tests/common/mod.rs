//! Helpers shared by integration tests: every log line of the test binary captured in a buffer,
//! and waiting, bounded, for a condition.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Every in-process log line of this test binary at INFO and above, once [`logged`] was called.
fn logs() -> &'static Mutex<Vec<u8>> {
    logs_at("info")
}

/// Like [`logs`], at `filter` (an `EnvFilter` directive) when it is the first call.
fn logs_at(filter: &str) -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Captured(Arc::clone(&buffer));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(writer)
            .try_init();
        buffer
    })
}

/// Starts capturing (call it first thing in a test).
pub fn capture_logs() {
    let _ = logs();
}

/// Starts capturing every level down to `filter` (`"trace"` for everything).
pub fn capture_logs_at(filter: &str) {
    let _ = logs_at(filter);
}

/// What was logged so far.
pub fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// A `MakeWriter` appending to the shared buffer.
#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Polls `check` every 20 ms until it holds; panics after `limit` naming `what`.
pub async fn wait_until<F: Future<Output = bool>>(limit: Duration, what: &str, mut check: impl FnMut() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `quern` admin binary with `args`, against `url` under `prefix`.
pub fn quern(url: &str, prefix: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quern"))
        .args(["--redis-url", url, "--prefix", prefix])
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run quern")
}
