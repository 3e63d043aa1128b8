//! A worker whose jobs declare `IsolatedPg` while no database is configured says so when it
//! starts, instead of retrying every such job until it is dead.
#![cfg(feature = "diesel")]

mod common;

use std::process::Command;

use quern::{IsolatedPg, Job, JobContext, JobError, JobOptions, PgConfig, Registry, Worker, WorkerError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct NeedsPg {}

impl Job for NeedsPg {
    const NAME: &'static str = "needs_pg";
    type Resources = IsolatedPg;
    fn options() -> JobOptions {
        JobOptions::new().queue("needs_pg")
    }
    async fn run(self, _: &JobContext, _: &mut IsolatedPg) -> Result<(), JobError> {
        Ok(())
    }
}

const TEST: &str = "a_worker_with_isolated_pg_jobs_and_no_database_refuses_to_start";

#[tokio::test]
async fn a_worker_with_isolated_pg_jobs_and_no_database_refuses_to_start() {
    // `DATABASE_URL` is read once per process: the check runs in a child without it.
    if std::env::var_os("QUERN_TEST_CHILD").is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--test-threads=1"])
            .env_remove("DATABASE_URL")
            .env("QUERN_TEST_CHILD", "1")
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let storage = common::storage(&test_support::redis_url()).await;
    let registry = || Registry::new().register::<NeedsPg>();

    let err = Worker::new(storage.clone(), registry())
        .run(std::future::pending())
        .await
        .expect_err("no database: the worker does not start");
    assert!(matches!(err, WorkerError::Misconfigured(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("\"needs_pg\"") && text.contains("DATABASE_URL"),
        "{text}"
    );

    // Told where the database is, it starts (and stops at once).
    Worker::new(storage.clone(), registry())
        .extension(PgConfig::new().database_url("postgres://root@127.0.0.1:5432/test"))
        .run(async {})
        .await
        .expect("configured: the worker starts");
    // A worker that does not work that job's queue does not need its database.
    Worker::new(storage.clone(), registry())
        .configure(|c| c.queues = vec!["elsewhere".into()])
        .run(async {})
        .await
        .expect("the job's queue is not worked here");
    for q in ["needs_pg", "elsewhere"] {
        storage.delete_queue(&storage.keys(q)).await.unwrap();
    }
}
