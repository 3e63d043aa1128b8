//! `IsolatedPg` through a real worker: connections never outlive their execution, whatever the
//! outcome; a job that blocks its runtime does not stall the worker; an unreachable database
//! gives a redacted, retried, dead-lettered failure; a PostgreSQL restart loses nothing; and the
//! process-wide pool it replaces, reproduced through the worker.
#![cfg(feature = "diesel")]

mod common;
mod isolated_pg_support;
/// The `pg_stat_activity` helpers of quern-diesel's own tests.
#[path = "../crates/quern-diesel/tests/common/mod.rs"]
mod pg;
use isolated_pg_support::{admin, init_tracing, insert, quiet_planned_panics};

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::RunningWorker;
use diesel_async::SimpleAsyncConnection;
use pg::{count_app, wait_gone};
use quern::{
    IsolatedPg, Isolation, Job, JobContext, JobError, JobOptions, PgConfig, Producer, Registry, Worker,
};
use serde::{Deserialize, Serialize};

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
