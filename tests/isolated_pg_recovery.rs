//! `IsolatedPg` through a real worker when things go wrong: an unreachable database gives a
//! redacted, retried, dead-lettered failure; a PostgreSQL restart loses nothing; the
//! process-wide pool it replaces, reproduced through the worker; and the site_generation example.
#![cfg(feature = "diesel")]

mod common;
mod isolated_pg_support;
/// The `pg_stat_activity` helpers of quern-diesel's own tests.
#[path = "../crates/quern-diesel/tests/common/mod.rs"]
mod pg;
use isolated_pg_support::{admin, init_tracing, insert, wait_settled};

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::RunningWorker;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pg::wait_gone;
use quern::{
    Backoff, DeadReason, DeadRecord, IsolatedPg, Isolation, Job, JobContext, JobError, JobOptions, PgConfig,
    Producer, Registry, Worker,
};
use serde::{Deserialize, Serialize};

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
