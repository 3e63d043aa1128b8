//! `IsolatedPg` through a real worker: connections never outlive their execution, whatever the
//! outcome; a job that blocks its runtime does not stall the worker; an unreachable database
//! gives a redacted, retried, dead-lettered failure; a PostgreSQL restart loses nothing; and the
//! process-wide pool it replaces, reproduced through the worker.
#![cfg(feature = "diesel")]

mod common;
/// The `pg_stat_activity` helpers of quern-diesel's own tests.
#[path = "../crates/quern-diesel/tests/common/mod.rs"]
mod pg;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::RunningWorker;
use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use pg::{count_app, wait_gone};
use quern::{
    Backoff, DeadReason, DeadRecord, IsolatedPg, Isolation, Job, JobContext, JobError, JobOptions, PgConfig,
    Producer, Registry, Storage, Worker,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An admin connection on the current runtime, to create tables and read `pg_stat_activity`.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("admin connection to {}: {e}", quern::redact_url(url)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Waits (bounded) until every job of the queue is settled: completed + dead == `total`.
async fn wait_settled(storage: &Storage, queue: &str, total: u64, limit: Duration) -> quern::QueueStats {
    let keys = storage.keys(queue);
    let done = common::wait_until(limit, || async {
        let s = storage.stats(&keys).await.unwrap();
        s.completed + s.dead >= total
    })
    .await;
    let stats = storage.stats(&keys).await.unwrap();
    assert!(done, "not all {total} jobs settled within {limit:?}: {stats:?}");
    stats
}

/// Logs to the test output only when `RUST_LOG` is set: the planned failures of this file would
/// otherwise flood `cargo test` (worker threads are not captured by the test harness).
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        common::init_tracing();
    }
}

/// Keeps the worker's panic hook from printing the panics this file causes on purpose.
fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let planned = message.is_some_and(|m| m.starts_with("planned panic"));
            if !planned {
                previous(info);
            }
        }));
    });
}

async fn insert(conn: &mut AsyncPgConnection, table: &str, n: u64) -> Result<(), diesel::result::Error> {
    diesel::sql_query(format!(
        "INSERT INTO {table} (n) VALUES ($1) ON CONFLICT DO NOTHING"
    ))
    .bind::<BigInt, _>(n as i64)
    .execute(conn)
    .await
    .map(drop)
}

// ---------------------------------------------------------------------------------------------
// a. 1,000 executions, every outcome, both isolations: no connection outlives its execution.
// ---------------------------------------------------------------------------------------------

const CHURN_JOBS: u64 = 1_000;
/// Prefix of the `application_name` of every connection the churn jobs open.
const CHURN_APP: &str = "quern:ipg_churn_";

/// `n % 10`: 0-5 succeed after an insert, 6 fail after an insert, 7 panic holding a connection,
/// 8 time out holding a connection inside an open transaction, 9 succeed without touching the
/// database. Even `n` run with `Isolation::Runtime`, odd with `Isolation::Task`. Only the jobs
/// meant to time out get the short timeout (`SHORT`), so a slow connect on a busy machine never
/// turns a success into a timeout.
#[derive(Serialize, Deserialize)]
struct Churn<const RUNTIME: bool, const SHORT: bool> {
    n: u64,
    table: String,
}

impl<const RUNTIME: bool, const SHORT: bool> Job for Churn<RUNTIME, SHORT> {
    const NAME: &'static str = match (RUNTIME, SHORT) {
        (true, false) => "ipg_churn_rt",
        (false, false) => "ipg_churn_task",
        (true, true) => "ipg_churn_rt_timeout",
        (false, true) => "ipg_churn_task_timeout",
    };
    type Resources = IsolatedPg;

    fn options() -> JobOptions {
        JobOptions::new()
            .queue("ipg_churn")
            .max_attempts(1)
            .timeout(Duration::from_millis(if SHORT { 300 } else { 20_000 }))
            .isolation(if RUNTIME {
                Isolation::Runtime
            } else {
                Isolation::Task
            })
    }

    async fn run(self, _: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        if self.n % 10 == 9 {
            return Ok(());
        }
        let mut conn = pg.get().await?;
        match self.n % 10 {
            0..=5 => {
                insert(&mut conn, &self.table, self.n).await?;
                Ok(())
            }
            6 => {
                insert(&mut conn, &self.table, self.n).await?;
                Err(JobError::msg("planned failure"))
            }
            7 => panic!("planned panic in job {}", self.n),
            _ => {
                conn.batch_execute("BEGIN").await?;
                insert(&mut conn, &self.table, self.n).await?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            }
        }
    }
}

async fn enqueue_churn<const RUNTIME: bool, const SHORT: bool>(producer: &Producer, table: &str) {
    let jobs: Vec<_> = (0..CHURN_JOBS)
        .filter(|n| (n % 2 == 0) == RUNTIME && (n % 10 == 8) == SHORT)
        .map(|n| Churn::<RUNTIME, SHORT> {
            n,
            table: table.to_owned(),
        })
        .collect();
    producer.enqueue_many(&jobs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_executions_leave_no_connection_behind() {
    init_tracing();
    quiet_planned_panics();
    let db_url = test_support::database_url();
    let admin = admin(&db_url).await;
    let table = test_support::unique_name("ipg_churn");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (n BIGINT PRIMARY KEY)"))
        .await
        .unwrap();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("ipg_churn");
    let producer = Producer::new(storage.clone());
    enqueue_churn::<true, false>(&producer, &table).await;
    enqueue_churn::<false, false>(&producer, &table).await;
    enqueue_churn::<true, true>(&producer, &table).await;
    enqueue_churn::<false, true>(&producer, &table).await;

    let started = Instant::now();
    let worker = Worker::new(
        storage.clone(),
        Registry::new()
            .register::<Churn<true, false>>()
            .register::<Churn<false, false>>()
            .register::<Churn<true, true>>()
            .register::<Churn<false, true>>(),
    )
    .configure(|c| c.concurrency = 32)
    .extension(PgConfig::new().database_url(&db_url));
    let w = RunningWorker::start(worker);
    let peak = std::cell::Cell::new(0);
    let settled = common::wait_until(Duration::from_secs(120), || {
        let (storage, keys, admin, peak) = (&storage, &keys, &admin, &peak);
        async move {
            peak.set(peak.get().max(count_app(admin, CHURN_APP).await));
            let s = storage.stats(keys).await.unwrap();
            s.completed + s.dead >= CHURN_JOBS
        }
    })
    .await;
    let elapsed = started.elapsed();
    let report = w.stop().await;
    let peak = peak.get();
    let stats = storage.stats(&keys).await.unwrap();
    let left = wait_gone(&admin, CHURN_APP, Duration::from_secs(5)).await;
    let rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    // Clean up before asserting, so a failed run leaves nothing behind.
    admin.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
    let dead_records = common::dead_records(&storage, &keys.queue, 1000).await;
    storage.delete_queue(&keys).await.unwrap();
    println!(
        "churn: {CHURN_JOBS} executions in {:.2} s: {} completed, {} dead; peak {peak} connections open; \
         {left} left after the run; {rows} rows; report {report:?}",
        elapsed.as_secs_f64(),
        stats.completed,
        stats.dead,
    );
    if stats.dead != 300 {
        for record in &dead_records {
            let planned = ["planned", "timed out after"];
            let chain = record
                .failures
                .last()
                .map(|f| f.chain.join(": "))
                .unwrap_or_default();
            if !planned.iter().any(|p| chain.contains(p)) {
                println!("unexpected failure: {chain}");
            }
        }
    }
    assert!(settled, "not all jobs settled: {stats:?}");
    assert_eq!(left, 0, "connections outlived their executions");
    assert_eq!(stats.completed + stats.dead, CHURN_JOBS, "{stats:?}");
    assert_eq!((stats.completed, stats.dead), (700, 300), "{stats:?}");
    assert_eq!((report.succeeded, report.dead), (700, 300), "{report:?}");
    // Successes and failures inserted (autocommit); timed-out jobs rolled back with their pool.
    assert_eq!(
        rows, 700,
        "600 successes + 100 failures inserted, the timeouts' inserts rolled back"
    );
    // One connection per running job (32), plus slack: pg_stat_activity shows a closed connection
    // for a few ms after its execution ended, while the next execution opens its own.
    assert!(peak <= 48, "connections pile up: peak {peak} for 32 running jobs");
}

// ---------------------------------------------------------------------------------------------
// b. A job that blocks its thread under Isolation::Runtime stalls nothing else.
// ---------------------------------------------------------------------------------------------

/// Executions of the blocker, by isolation (index 1: `Isolation::Runtime`).
static BLOCKER_RUNS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// When each quick job started, by isolation of the blocker next to it.
static QUICK_STARTS: [Mutex<Vec<Instant>>; 2] = [Mutex::new(Vec::new()), Mutex::new(Vec::new())];

const fn block_queue(runtime: bool) -> &'static str {
    if runtime { "ipg_block_rt" } else { "ipg_block_task" }
}

/// Blocks its thread (not just its task) for 2 s, as CPU-bound or sync-I/O code does.
#[derive(Serialize, Deserialize)]
struct Blocker<const RUNTIME: bool> {}

impl<const RUNTIME: bool> Job for Blocker<RUNTIME> {
    const NAME: &'static str = if RUNTIME {
        "ipg_blocker_rt"
    } else {
        "ipg_blocker_task"
    };
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue(block_queue(RUNTIME))
            .isolation(if RUNTIME {
                Isolation::Runtime
            } else {
                Isolation::Task
            })
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        BLOCKER_RUNS[RUNTIME as usize].fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    }
}

/// Records when it started; runs with `Isolation::Task` next to a `Blocker<RUNTIME>`.
#[derive(Serialize, Deserialize)]
struct Quick<const RUNTIME: bool> {
    n: u64,
}

impl<const RUNTIME: bool> Job for Quick<RUNTIME> {
    const NAME: &'static str = if RUNTIME { "ipg_quick_rt" } else { "ipg_quick_task" };
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue(block_queue(RUNTIME))
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        QUICK_STARTS[RUNTIME as usize]
            .lock()
            .unwrap()
            .push(Instant::now());
        Ok(())
    }
}

struct BlockingRun {
    /// From enqueue to start, for each quick job enqueued while the blocker held its thread.
    delays: Vec<Option<Duration>>,
    blocker_runs: u64,
    stats: quern::QueueStats,
    succeeded: u64,
}

/// How many blockers run at once: as many as the test runtime has worker threads, so that with
/// `Isolation::Task` every worker thread can end up blocked.
const BLOCKERS: u64 = 4;

/// A worker with a 1 s lease; `BLOCKERS` jobs each holding its thread for 2 s; five quick jobs
/// enqueued one by one while they do. Waits long enough after for a lapsed lease to show.
async fn blocking_scenario<const RUNTIME: bool>() -> BlockingRun {
    let i = RUNTIME as usize;
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys(block_queue(RUNTIME));
    let producer = Producer::new(storage.clone());
    let worker = Worker::new(
        storage.clone(),
        Registry::new()
            .register::<Blocker<RUNTIME>>()
            .register::<Quick<RUNTIME>>(),
    )
    .configure(|c| {
        c.concurrency = 8;
        c.lease = Duration::from_secs(1);
    });
    let w = RunningWorker::start(worker);

    for _ in 0..BLOCKERS {
        producer.enqueue(&Blocker::<RUNTIME> {}).await.unwrap();
    }
    let blockers_started = common::wait_until(Duration::from_secs(5), || async {
        AtomicU64::load(&BLOCKER_RUNS[i], Ordering::SeqCst) == BLOCKERS
    })
    .await;
    assert!(blockers_started, "the blocking jobs never started");
    // The blockers now hold their threads for 2 s. Jobs enqueued now should start at once.
    let mut delays = Vec::new();
    for n in 0..5 {
        let before = QUICK_STARTS[i].lock().unwrap().len();
        let enqueued = Instant::now();
        producer.enqueue(&Quick::<RUNTIME> { n }).await.unwrap();
        let started = common::wait_until(Duration::from_secs(3), || async {
            QUICK_STARTS[i].lock().unwrap().len() > before
        })
        .await;
        delays.push(started.then(|| QUICK_STARTS[i].lock().unwrap()[before] - enqueued));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::wait_until(Duration::from_secs(10), || async {
        storage.stats(&keys).await.unwrap().completed >= BLOCKERS + 5
    })
    .await;
    // Outlive the blockers by more than two leases: a lapsed lease would have run it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let report = w.stop().await;
    let stats = storage.stats(&keys).await.unwrap();
    storage.delete_queue(&keys).await.unwrap();
    BlockingRun {
        delays,
        blocker_runs: AtomicU64::load(&BLOCKER_RUNS[i], Ordering::SeqCst),
        stats,
        succeeded: report.succeeded,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_runtime_job_delays_neither_other_jobs_nor_lease_renewal() {
    init_tracing();
    let run = blocking_scenario::<true>().await;
    println!(
        "blocking job, Isolation::Runtime: quick jobs started after {:?}; blocker ran {} time(s); {:?}",
        run.delays, run.blocker_runs, run.stats
    );
    assert!(
        run.delays
            .iter()
            .all(|d| d.is_some_and(|d| d < Duration::from_millis(300))),
        "jobs waited on the blocked thread: {:?}",
        run.delays
    );
    assert_eq!(
        run.blocker_runs, BLOCKERS,
        "a blocked job's lease lapsed and it ran again"
    );
    let s = &run.stats;
    assert_eq!(
        (s.completed, s.dead, s.pending, s.running),
        (BLOCKERS + 5, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(run.succeeded, BLOCKERS + 5);
}

/// The same with `Isolation::Task`: the blockers block the runtime's worker threads. Whether the
/// quick jobs and the lease renewal still run then depends on which thread tokio's scheduler put
/// each task on (work stealing, the LIFO slot, the blocking pool), so nothing is asserted;
/// run it with `cargo test --test isolated_pg -- --ignored --nocapture` to see the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not deterministic"]
async fn measure_a_blocking_task_job() {
    init_tracing();
    let run = blocking_scenario::<false>().await;
    println!(
        "blocking job, Isolation::Task: quick jobs started after {:?}; blocker ran {} time(s); {:?}",
        run.delays, run.blocker_runs, run.stats
    );
}

// ---------------------------------------------------------------------------------------------
// c. Unreachable PostgreSQL: retried, dead-lettered, the password nowhere.
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "s3cr3t-pw-7f41c2";

#[derive(Serialize, Deserialize)]
struct Unreachable {}

impl Job for Unreachable {
    const NAME: &'static str = "ipg_unreachable";
    type Resources = IsolatedPg;
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("ipg_unreachable")
            .max_attempts(3)
            .backoff(Backoff::Fixed(Duration::from_millis(100)))
    }
    async fn run(self, _: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        let mut conn = pg.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
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

// A current-thread runtime: the worker and every execution (Isolation::Task) run on this thread,
// so a thread-local subscriber sees all their logs, and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_database_is_retried_then_dead_lettered_without_the_password() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://quern:{SECRET}@127.0.0.1:{port}/tenant_db");
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("ipg_unreachable");
    let id = Producer::new(storage.clone())
        .enqueue(&Unreachable {})
        .await
        .unwrap()
        .to_string();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Unreachable>()).extension(
        PgConfig::new()
            .database_url(&url)
            .connect_timeout(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let w = RunningWorker::start(worker);
    let stats = wait_settled(&storage, "ipg_unreachable", 1, Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    let report = w.stop().await;
    // `stats.failed` counts every failed execution: attempts 1 and 2 (retried) and 3 (dead).
    assert_eq!(
        (stats.dead, stats.completed, stats.failed),
        (1, 0, 3),
        "{stats:?}"
    );
    assert_eq!((report.failed, report.dead), (3, 1), "{report:?}");

    let record: DeadRecord = common::dead_record(&storage, &keys.queue, &id)
        .await
        .expect("a dead record");
    let raw = record.encode();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    println!(
        "unreachable: dead after {elapsed:?}; record message: {}",
        record.message
    );
    assert_eq!(record.reason, DeadReason::MaxAttempts);
    assert_eq!(record.attempt, 3);
    let last = record.failures.last().expect("the last failure");
    assert!(last.chain.len() >= 2, "the cause is kept: {:?}", last.chain);
    let target = format!("127.0.0.1:{port}/tenant_db");
    assert!(last.chain.iter().any(|l| l.contains(&target)), "{:?}", last.chain);
    assert!(record.message.contains("quern:***@"), "{}", record.message);
    // Every attempt's failure travels with the envelope; the last one is in `failures` too.
    let envelope = record.envelope.as_deref().unwrap_or_default();
    assert!(envelope.contains(&target), "attempts 1 and 2: {envelope}");
    assert!(
        !raw.contains(SECRET),
        "the password leaked into the dead record: {raw}"
    );
    assert!(
        logs.contains(&target),
        "the failures were logged (capture works): {logs}"
    );
    assert!(
        !logs.contains(SECRET),
        "the password leaked into the logs: {logs}"
    );
    // 3 attempts with 100 ms between them: well under the 2 s connect timeout each.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    storage.delete_queue(&keys).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// d. PostgreSQL restarted mid-run: every row written, nothing dead.
// ---------------------------------------------------------------------------------------------

const RESTART_JOBS: u64 = 200;

#[derive(Serialize, Deserialize)]
struct Upsert<const RUNTIME: bool> {
    n: u64,
    table: String,
}

impl<const RUNTIME: bool> Job for Upsert<RUNTIME> {
    const NAME: &'static str = if RUNTIME {
        "ipg_upsert_rt"
    } else {
        "ipg_upsert_task"
    };
    type Resources = IsolatedPg;
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("ipg_restart")
            .max_attempts(100)
            .backoff(Backoff::Fixed(Duration::from_millis(100)))
            .timeout(Duration::from_secs(10))
            .isolation(if RUNTIME {
                Isolation::Runtime
            } else {
                Isolation::Task
            })
    }
    async fn run(self, _: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        let mut conn = pg.get().await?;
        // Slow enough that the restart lands in the middle of the run.
        tokio::time::sleep(Duration::from_millis(100)).await;
        insert(&mut conn, &self.table, self.n).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing() {
    init_tracing();
    let pg = tokio::task::spawn_blocking(test_support::PgServer::start)
        .await
        .unwrap();
    let db_url = pg.url_default();
    let table = test_support::unique_name("ipg_restart");
    test_support::PgServer::execute(
        &pg,
        "test",
        &format!("CREATE TABLE {table} (n BIGINT PRIMARY KEY)"),
    );
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("ipg_restart");
    let producer = Producer::new(storage.clone());
    for n in 0..RESTART_JOBS {
        let table = table.clone();
        if n % 2 == 0 {
            producer.enqueue(&Upsert::<true> { n, table }).await.unwrap();
        } else {
            producer.enqueue(&Upsert::<false> { n, table }).await.unwrap();
        }
    }
    let worker = Worker::new(
        storage.clone(),
        Registry::new()
            .register::<Upsert<true>>()
            .register::<Upsert<false>>(),
    )
    .configure(|c| c.concurrency = 8)
    .extension(
        PgConfig::new()
            .database_url(&db_url)
            .connect_timeout(Duration::from_secs(1)),
    );
    let started = Instant::now();
    let w = RunningWorker::start(worker);
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            storage.stats(&keys).await.unwrap().completed >= 40
        })
        .await
    );
    let before_stop = storage.stats(&keys).await.unwrap().completed;
    let pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        std::thread::sleep(Duration::from_secs(1));
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    let down_for = started.elapsed();
    let stats = wait_settled(&storage, "ipg_restart", RESTART_JOBS, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let report = w.stop().await;
    let admin = admin(&db_url).await;
    let rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    let left = wait_gone(&admin, "quern:ipg_upsert_", Duration::from_secs(5)).await;
    println!(
        "restart: {before_stop} done before the stop; all settled after {:.2} s (restart done at {:.2} s); \
         {} failed attempts retried; {} dead; {rows} rows; {left} connections left",
        elapsed.as_secs_f64(),
        down_for.as_secs_f64(),
        stats.failed,
        stats.dead,
    );
    assert!(
        before_stop < RESTART_JOBS && stats.failed > 0,
        "the restart happened mid-run and jobs failed while the server was down"
    );
    assert_eq!((stats.completed, stats.dead), (RESTART_JOBS, 0), "{stats:?}");
    assert_eq!(rows, RESTART_JOBS as i64);
    assert_eq!(left, 0);
    assert_eq!(report.dead, 0);
    storage.delete_queue(&keys).await.unwrap();
    drop(pg);
}

// ---------------------------------------------------------------------------------------------
// e. The process-wide pool IsolatedPg replaces, reproduced through the worker.
// ---------------------------------------------------------------------------------------------

const POOL_JOBS: u64 = 100;

/// The naive design: one pool for the process, built on the runtime of the first job that needs it.
static GLOBAL_POOL: OnceLock<Pool<AsyncPgConnection>> = OnceLock::new();
/// The URL and `application_name` the global pool connects with, set by the test.
static GLOBAL_URL: OnceLock<(String, String)> = OnceLock::new();
static GLOBAL_CONNECTS: AtomicUsize = AtomicUsize::new(0);
static GLOBAL_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn global_pool() -> &'static Pool<AsyncPgConnection> {
    GLOBAL_POOL.get_or_init(|| {
        let (url, app) = GLOBAL_URL.get().expect("the test sets the URL first");
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}application_name={app}");
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = Box::new(|url| {
            Box::pin(async move {
                GLOBAL_CONNECTS.fetch_add(1, Ordering::Relaxed);
                AsyncPgConnection::establish(url).await
            })
        });
        Pool::builder(AsyncDieselConnectionManager::new_with_config(url, config))
            .max_size(4)
            .build()
            .expect("build the global pool")
    })
}

#[derive(Serialize, Deserialize)]
struct WithGlobalPool {}

impl Job for WithGlobalPool {
    const NAME: &'static str = "ipg_global_pool";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("ipg_global")
            .max_attempts(1)
            .timeout(Duration::from_secs(2))
            .isolation(Isolation::Runtime)
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        let r = async {
            let mut conn = global_pool().get().await.map_err(|e| format!("get: {e}"))?;
            diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .map_err(|e| format!("query: {e}"))?;
            Ok::<_, String>(())
        }
        .await;
        if let Err(e) = &r {
            GLOBAL_ERRORS.lock().unwrap().push(e.clone());
        }
        r.map_err(JobError::msg)
    }
}

static ISOLATED_OPENED: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
struct WithIsolatedPg {}

impl Job for WithIsolatedPg {
    const NAME: &'static str = "ipg_isolated_pool";
    type Resources = IsolatedPg;
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("ipg_isolated")
            .max_attempts(1)
            .timeout(Duration::from_secs(2))
            .isolation(Isolation::Runtime)
    }
    async fn run(self, _: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        let mut conn = pg.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        drop(conn);
        ISOLATED_OPENED.fetch_add(pg.connections_opened(), Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_pool_breaks_across_execution_runtimes_and_isolated_pg_does_not() {
    init_tracing();
    let db_url = test_support::database_url();
    let admin = admin(&db_url).await;
    let app = test_support::unique_name("ipg_global");
    GLOBAL_URL.set((db_url.clone(), app.clone())).unwrap();
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());

    // --- One global pool. ---
    let jobs: Vec<_> = (0..POOL_JOBS).map(|_| WithGlobalPool {}).collect();
    producer.enqueue_many(&jobs).await.unwrap();
    let worker = Worker::new(storage.clone(), Registry::new().register::<WithGlobalPool>())
        .configure(|c| c.concurrency = 4);
    let w = RunningWorker::start(worker);
    let global = wait_settled(&storage, "ipg_global", POOL_JOBS, Duration::from_secs(120)).await;
    w.stop().await;
    let reconnects = AtomicUsize::load(&GLOBAL_CONNECTS, Ordering::Relaxed);
    let errors = GLOBAL_ERRORS.lock().unwrap().clone();
    let timeouts = global.dead as usize - errors.len();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for e in &errors {
        *kinds.entry(e.chars().take(60).collect()).or_default() += 1;
    }
    if let Some(pool) = GLOBAL_POOL.get() {
        pool.close();
    }
    let global_left = wait_gone(&admin, &app, Duration::from_secs(5)).await;
    println!(
        "global pool through the worker: {} / {POOL_JOBS} ok, {} errors, {timeouts} timed out (hung); \
         {reconnects} connections opened for {POOL_JOBS} jobs; {global_left} left after close; errors: {kinds:?}",
        global.completed,
        errors.len(),
    );
    let failures = global.dead as usize;
    assert!(
        failures > 0 || reconnects >= POOL_JOBS as usize / 2,
        "expected the global pool to fail or to reconnect for most jobs: {failures} failed, {reconnects} connects"
    );

    // --- The same jobs with IsolatedPg. ---
    let jobs: Vec<_> = (0..POOL_JOBS).map(|_| WithIsolatedPg {}).collect();
    producer.enqueue_many(&jobs).await.unwrap();
    let worker = Worker::new(storage.clone(), Registry::new().register::<WithIsolatedPg>())
        .configure(|c| c.concurrency = 4)
        .extension(PgConfig::new().database_url(&db_url));
    let w = RunningWorker::start(worker);
    let isolated = wait_settled(&storage, "ipg_isolated", POOL_JOBS, Duration::from_secs(60)).await;
    w.stop().await;
    let left = wait_gone(&admin, "quern:ipg_isolated_pool:", Duration::from_secs(5)).await;
    println!(
        "IsolatedPg through the worker: {} / {POOL_JOBS} ok, {} dead; {} connections opened; {left} left",
        isolated.completed,
        isolated.dead,
        AtomicU64::load(&ISOLATED_OPENED, Ordering::Relaxed),
    );
    assert_eq!(
        (isolated.completed, isolated.dead),
        (POOL_JOBS, 0),
        "{isolated:?}"
    );
    assert_eq!(
        AtomicU64::load(&ISOLATED_OPENED, Ordering::Relaxed),
        POOL_JOBS,
        "one connection per execution"
    );
    assert_eq!(left, 0);
    storage.delete_queue(&storage.keys("ipg_global")).await.unwrap();
    storage.delete_queue(&storage.keys("ipg_isolated")).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The site_generation example, end to end.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_site_generation_example_runs_and_leaves_no_connection() {
    let out = std::process::Command::new(common::example_bin("site_generation"))
        .args(["--sites", "5"])
        .env("REDIS_URL", test_support::redis_url())
        .env("DATABASE_URL", test_support::database_url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the site_generation example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("sites done: 5"), "{stdout}");
    assert!(stdout.contains("connections left: 0"), "{stdout}");
}
