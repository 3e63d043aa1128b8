//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use quern::{RedisConfig, Storage};

/// A storage on the test Redis with a key prefix of its own, so tests run in parallel.
pub async fn storage(url: &str) -> Storage {
    let prefix = test_support::unique_name("qt");
    Storage::connect(RedisConfig::new(url).prefix(prefix)).await.expect("test Redis reachable")
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
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}
