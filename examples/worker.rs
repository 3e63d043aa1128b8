//! A worker binary with two demonstration jobs, used by the end-to-end tests that kill, signal
//! and restart worker processes.
//!
//! ```text
//! cargo run --example worker -- run --queue demo --lease-secs 2
//! cargo run --example worker -- enqueue record '{"key":"demo:runs","id":1,"sleep_ms":10}' --queue demo
//! ```

use std::time::Duration;

use quern::{Backoff, Job, JobContext, JobError, JobOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

/// Records each execution: `HINCRBY <key> <id> 1`, after sleeping `sleep_ms`. With `fail`, fails
/// instead: `"error"` (retryable, with a cause chain), `"permanent"` or `"panic"`.
#[derive(Serialize, Deserialize)]
struct Record {
    key: String,
    id: u64,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail: Option<String>,
}

/// One connection for the process; it reconnects by itself after Redis restarts.
static REDIS: OnceCell<redis::aio::ConnectionManager> = OnceCell::const_new();

async fn redis() -> Result<redis::aio::ConnectionManager, JobError> {
    let conn = REDIS
        .get_or_try_init(|| async {
            let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            redis::Client::open(url)?.get_connection_manager().await
        })
        .await?;
    Ok(conn.clone())
}

impl Job for Record {
    const NAME: &'static str = "record";
    type Resources = ();

    fn options() -> JobOptions {
        // Quick retries, so that a demonstration reaches the dead set in about a second.
        JobOptions::new().backoff(Backoff::Fixed(Duration::from_millis(100)))
    }

    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        match self.fail.as_deref() {
            Some("error") => {
                let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
                return Err(JobError::from(cause)
                    .context("calling the billing service")
                    .context(format!("recording {}", self.id)));
            }
            Some("permanent") => return Err(JobError::permanent(format!("record {} was deleted", self.id))),
            Some("panic") => panic!("record {} is corrupt", self.id),
            _ => {}
        }
        let mut conn = redis().await?;
        redis::cmd("HINCRBY")
            .arg(&self.key)
            .arg(self.id)
            .arg(1)
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    quern::cli::main(quern::Registry::new().register::<Record>()).await
}

#[cfg(test)]
mod tests {
    use quern::testing::perform;

    use super::*;

    fn failing(how: &str) -> Record {
        Record {
            key: "unused".into(),
            id: 1,
            sleep_ms: 0,
            fail: Some(how.into()),
        }
    }

    #[tokio::test]
    async fn each_kind_of_failure_ends_as_a_worker_would_end_it() {
        let error = perform(&failing("error")).await;
        assert_eq!(
            error.chain(),
            ["recording 1", "calling the billing service", "connection refused"]
        );
        assert!(error.is_retryable() && error.will_run_again());

        let permanent = perform(&failing("permanent")).await;
        assert_eq!(permanent.chain(), ["record 1 was deleted"]);
        assert!(permanent.is_dead());

        let panicked = perform(&failing("panic")).await;
        assert!(
            panicked
                .panic_message()
                .is_some_and(|m| m.starts_with("record 1 is corrupt")),
            "{panicked:?}"
        );
    }
}
