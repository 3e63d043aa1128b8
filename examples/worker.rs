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

/// The app's state, given to the worker once (`Worker::extension`) and read by jobs with
/// `ctx.state()`: a Redis client for the same server the worker uses, connected on first use
/// and shared by every job (it reconnects by itself after Redis restarts).
struct App {
    client: Result<redis::Client, String>,
    conn: OnceCell<redis::aio::ConnectionManager>,
}

impl App {
    fn new(url: &str) -> Self {
        Self {
            client: redis::Client::open(url).map_err(|e| e.to_string()),
            conn: OnceCell::new(),
        }
    }

    async fn redis(&self) -> Result<redis::aio::ConnectionManager, JobError> {
        let client = self.client.as_ref().map_err(|e| JobError::permanent(e.clone()))?;
        let conn = self
            .conn
            .get_or_try_init(|| client.get_connection_manager())
            .await?;
        Ok(conn.clone())
    }
}

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

impl Job for Record {
    const NAME: &'static str = "record";
    type Resources = ();

    fn options() -> JobOptions {
        // Quick retries, so that a demonstration reaches the dead set in about a second.
        JobOptions::new().backoff(Backoff::Fixed(Duration::from_millis(100)))
    }

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
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
        let app: &App = ctx
            .state()
            .ok_or_else(|| JobError::permanent("the worker was started without the App state"))?;
        let mut conn = app.redis().await?;
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
    // The hook gets the Redis URL the command line resolved: the jobs' client goes where the
    // worker does.
    quern::cli::main_with(quern::Registry::new().register::<Record>(), |worker, setup| {
        worker.extension(App::new(&setup.redis.url))
    })
    .await
}

#[cfg(test)]
mod tests {
    use quern::testing::{Performer, perform};

    use super::*;

    #[tokio::test]
    async fn a_record_goes_through_the_apps_redis_client() {
        let url = quern::testing::redis_url();
        let key = format!("worker-example:{}", quern::JobId::new());
        let record = Record {
            key: key.clone(),
            id: 7,
            sleep_ms: 0,
            fail: None,
        };
        let done = Performer::new().extension(App::new(&url)).perform(&record).await;
        done.assert_succeeded();
        let mut conn = App::new(&url).redis().await.unwrap();
        let count: u64 = redis::cmd("HGET")
            .arg(&key)
            .arg(7)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(count, 1);

        // Without the state, the job says what is missing and is not retried.
        let missing = perform(&record).await;
        assert!(missing.is_dead(), "{missing:?}");
        assert_eq!(missing.chain(), ["the worker was started without the App state"]);
    }

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
