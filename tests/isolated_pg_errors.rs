//! `?` on a diesel error inside an `IsolatedPg` job, against the real PostgreSQL, through a real
//! worker: an error in the statement (a table that does not exist, a syntax error) is permanent
//! and dead-letters the job after one attempt; a lost connection, a serialization failure and a
//! deadlock are retried, and the next attempt succeeds.
#![cfg(feature = "diesel")]

mod common;
mod isolated_pg_support;

use std::time::Duration;

use common::RunningWorker;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::RunQueryDsl;
use isolated_pg_support::{admin, init_tracing, wait_settled};
use quern::{
    Backoff, DeadReason, IsolatedPg, Job, JobContext, JobError, JobOptions, PgConfig, Producer, Registry,
    Worker,
};
use serde::{Deserialize, Serialize};

const QUEUE: &str = "ipg_errors";

/// Fails on its first attempt the way `fail` says, with nothing but `?` on the diesel error;
/// records the attempt that got past that in `table`.
#[derive(Serialize, Deserialize)]
struct Query {
    n: i64,
    table: String,
    fail: Fail,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
enum Fail {
    /// Every attempt reads a table that does not exist (`42P01 undefined_table`).
    MissingTable,
    /// Every attempt sends a statement with a syntax error (`42601 syntax_error`).
    Syntax,
    /// The first attempt's connection is terminated by the server under the job's feet.
    LostConnection,
    /// The first attempt gets a serialization failure (`40001`).
    Serialization,
    /// The first attempt gets a deadlock (`40P01`).
    Deadlock,
}

impl Job for Query {
    const NAME: &'static str = "ipg_errors_query";
    type Resources = IsolatedPg;

    fn options() -> JobOptions {
        JobOptions::new()
            .queue(QUEUE)
            .max_attempts(4)
            .backoff(Backoff::Fixed(Duration::from_millis(50)))
            .timeout(Duration::from_secs(30))
    }

    async fn run(self, ctx: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        let mut conn = pg.get().await?;
        let first = ctx.attempt == 1;
        match self.fail {
            Fail::MissingTable => {
                diesel::sql_query(format!("SELECT n FROM {}_missing", self.table))
                    .execute(&mut conn)
                    .await?;
            }
            Fail::Syntax => {
                diesel::sql_query(format!("SELEC n FROM {}", self.table))
                    .execute(&mut conn)
                    .await?;
            }
            Fail::LostConnection if first => {
                // The server ends this session (`57P01`); the query gets the lost connection.
                diesel::sql_query("SELECT pg_terminate_backend(pg_backend_pid())")
                    .execute(&mut conn)
                    .await?;
                diesel::sql_query("SELECT 1").execute(&mut conn).await?;
            }
            Fail::Serialization | Fail::Deadlock if first => {
                let code = match self.fail {
                    Fail::Serialization => "serialization_failure",
                    _ => "deadlock_detected",
                };
                diesel::sql_query(format!(
                    "DO $$ BEGIN RAISE EXCEPTION 'planned conflict' USING ERRCODE = '{code}'; END $$"
                ))
                .execute(&mut conn)
                .await?;
            }
            _ => {}
        }
        diesel::sql_query(format!(
            "INSERT INTO {} (n, fail, attempt) VALUES ($1, $2, $3)",
            self.table
        ))
        .bind::<BigInt, _>(self.n)
        .bind::<Text, _>(format!("{:?}", self.fail))
        .bind::<Integer, _>(ctx.attempt as i32)
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_in_the_statement_dead_letter_at_once_and_lost_connections_and_conflicts_retry() {
    init_tracing();
    let db_url = test_support::database_url();
    let admin = admin(&db_url).await;
    let table = test_support::unique_name("ipg_errors");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (n BIGINT PRIMARY KEY, fail TEXT NOT NULL, attempt INT NOT NULL)"
        ))
        .await
        .unwrap();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys(QUEUE);
    let producer = Producer::new(storage.clone());
    let cases = [
        Fail::MissingTable,
        Fail::Syntax,
        Fail::LostConnection,
        Fail::Serialization,
        Fail::Deadlock,
    ];
    let mut ids = Vec::new();
    for (n, fail) in cases.iter().enumerate() {
        let job = Query {
            n: n as i64,
            table: table.clone(),
            fail: *fail,
        };
        ids.push(producer.enqueue(&job).await.unwrap());
    }
    let worker = Worker::new(storage.clone(), Registry::new().register::<Query>())
        .extension(PgConfig::new().database_url(&db_url));
    let running = RunningWorker::start(worker);
    let stats = wait_settled(&storage, QUEUE, cases.len() as u64, Duration::from_secs(60)).await;
    running.stop().await;
    let rows = admin
        .query(&format!("SELECT fail, attempt FROM {table} ORDER BY n"), &[])
        .await
        .unwrap();
    let rows: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut dead = Vec::new();
    for id in &ids[..2] {
        dead.push(common::dead_record(&storage, QUEUE, id.as_str()).await);
    }
    admin.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
    storage.delete_queue(&keys).await.unwrap();

    assert_eq!((stats.completed, stats.dead), (3, 2), "{stats:?}");
    for (record, fail) in dead.iter().zip(cases) {
        let record = record
            .as_ref()
            .unwrap_or_else(|| panic!("{fail:?}: not dead-lettered"));
        assert_eq!(
            (record.reason, record.attempt),
            (DeadReason::Permanent, 1),
            "{fail:?} is permanent: {}",
            record.message
        );
        assert_eq!(record.failures.len(), 1, "{fail:?}: {:?}", record.failures);
    }
    assert!(
        dead[0].as_ref().unwrap().message.contains("does not exist"),
        "{}",
        dead[0].as_ref().unwrap().message
    );
    assert_eq!(
        rows,
        [
            ("LostConnection".to_owned(), 2),
            ("Serialization".to_owned(), 2),
            ("Deadlock".to_owned(), 2)
        ],
        "each was retried once, and the second attempt passed"
    );
}
