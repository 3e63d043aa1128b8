//! Claimed jobs that cannot start at once: they start late but once while their lease is kept,
//! and never once it ran out (another copy may run by then).
//!
//! Both tests block the runtime that runs the executions — a single thread — with a job that
//! sleeps past its 1 s lease, while other jobs of the same worker are claimed and waiting.
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use quern::{
    Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Registry, Shutdown, Storage, Worker,
    WorkerConfig, WorkerReport,
};
use serde::{Deserialize, Serialize};

const LEASE: Duration = Duration::from_secs(1);

/// Sleeps its thread for `block_ms` (the mistake that blocks a runtime), or 10 ms the async way.
#[derive(Serialize, Deserialize)]
struct Step {
    n: u64,
    #[serde(default)]
    block_ms: u64,
}

#[derive(Debug, Clone)]
struct Run {
    queue: String,
    n: u64,
    attempt: u32,
    thread: String,
    started: Instant,
    ended: Instant,
}

static RUNS: Mutex<Vec<Run>> = Mutex::new(Vec::new());

impl Job for Step {
    const NAME: &'static str = "step";
    type Resources = ();

    fn options() -> JobOptions {
        // A copy requeued after its lease expired runs as attempt 2: allowed.
        JobOptions::new().max_attempts(3)
    }

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        let started = Instant::now();
        if self.block_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.block_ms));
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        RUNS.lock().unwrap().push(Run {
            queue: ctx.queue.clone(),
            n: self.n,
            attempt: ctx.attempt,
            thread: std::thread::current().name().unwrap_or("?").to_owned(),
            started,
            ended: Instant::now(),
        });
        Ok(())
    }
}

fn runs(queue: &str) -> Vec<Run> {
    RUNS.lock()
        .unwrap()
        .iter()
        .filter(|r| r.queue == queue)
        .cloned()
        .collect()
}

async fn enqueue(producer: &Producer, queue: &str, n: u64, block_ms: u64) {
    let json = format!(r#"{{"n":{n},"block_ms":{block_ms}}}"#);
    producer.enqueue_json(queue, "step", &json, None).await.unwrap();
}

/// A worker of `queue` whose executions run on a single-threaded runtime, on a thread named
/// `name`, as in a process whose only runtime thread a job blocks.
fn start_worker(
    name: &'static str,
    url: &str,
    prefix: &str,
    queue: &str,
    stop: &Shutdown,
    configure: fn(&mut WorkerConfig),
) -> std::thread::JoinHandle<WorkerReport> {
    let (url, prefix, queue, stop) = (url.to_owned(), prefix.to_owned(), queue.to_owned(), stop.clone());
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let storage = Storage::connect(RedisConfig::new(&url).prefix(prefix))
                    .await
                    .unwrap();
                Worker::new(storage, Registry::new().register::<Step>())
                    .configure(|c| {
                        c.queues = vec![queue];
                        c.lease = LEASE;
                        c.concurrency = 8;
                        c.block = Duration::from_millis(200);
                        c.consumer = name.to_owned();
                        c.capture_panics = false;
                        configure(c);
                    })
                    .run(quern::shutdown_from(&stop))
                    .await
                    .unwrap()
            })
        })
        .unwrap()
}

/// With the worker's tasks on a runtime of their own, renewals go on while the executions'
/// runtime is blocked: the jobs claimed meanwhile keep their leases, wait, and run once when
/// the block ends — not requeued, not run by the other worker, not dropped as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_jobs_wait_out_a_blocked_runtime_and_run_once() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let producer = Producer::new(storage.clone());
    let queue = "wait-out";
    let keys = storage.keys(queue);
    let stop = Shutdown::new();

    let a = start_worker("wait-out-a", &url, &prefix, queue, &stop, |_| {});
    enqueue(&producer, queue, 0, 3_000).await;
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            storage.stats(&keys).await.unwrap().running == 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await; // the blocking job is running by now
    let claimed_from = Instant::now();
    for n in 1..=6 {
        enqueue(&producer, queue, n, 0).await;
    }
    assert!(
        common::wait_until(Duration::from_secs(2), || async {
            storage.stats(&keys).await.unwrap().running == 7
        })
        .await,
        "worker a claimed the six jobs while its runtime was blocked"
    );
    // Another worker, free all along: it would run any of them whose lease ran out.
    let b = start_worker("wait-out-b", &url, &prefix, queue, &stop, |_| {});
    let done = common::wait_until(Duration::from_secs(20), || async { runs(queue).len() == 7 }).await;
    assert!(done, "{:?}", runs(queue));
    tokio::time::sleep(LEASE * 2).await; // time for a wrongly requeued copy to run
    stop.trigger();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());

    let all = runs(queue);
    assert_eq!(all.len(), 7, "each job ran once: {all:?}");
    let block_end = all.iter().find(|r| r.n == 0).unwrap().ended;
    assert!(
        block_end - claimed_from > LEASE * 2,
        "they waited two leases and more"
    );
    for r in all.iter().filter(|r| r.n != 0) {
        assert_eq!(
            (r.thread.as_str(), r.attempt),
            ("wait-out-a", 1),
            "run by the worker that claimed it, in its first attempt: {r:?}"
        );
        assert!(r.started >= block_end, "once the block ended: {r:?}");
    }
    assert_eq!((a.stale, b.stale), (0, 0), "their leases were renewed: not stale");
    assert_eq!((a.succeeded, b.succeeded), (7, 0));
    assert_eq!(a.blocked, 1, "the watchdog saw the blocking job");
}

/// With the worker's tasks on the caller's runtime (`own_runtime = false`), a job that blocks
/// that runtime's only thread freezes everything: no renewals. The jobs claimed with it wait
/// past their lease; when the block ends they are dropped unstarted (`stale`), and run once,
/// from the queue, after the reaper requeued them — never alongside a copy of themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_whose_lease_ran_out_before_they_started_never_start() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let producer = Producer::new(storage.clone());
    let queue = "frozen";
    // Claimed in one batch, in this order: the blocking job starts first and freezes the thread.
    enqueue(&producer, queue, 0, 2_500).await;
    for n in 1..=7 {
        enqueue(&producer, queue, n, 0).await;
    }
    let stop = Shutdown::new();
    let worker = start_worker("frozen", &url, &prefix, queue, &stop, |c| c.own_runtime = false);
    let done = common::wait_until(Duration::from_secs(20), || async { runs(queue).len() == 8 }).await;
    assert!(done, "{:?}", runs(queue));
    tokio::time::sleep(LEASE * 2).await; // time for any extra copy to run
    stop.trigger();
    let report = worker.join().unwrap();

    let all = runs(queue);
    assert_eq!(all.len(), 8, "each job ran once: {all:?}");
    let blocker = all.iter().find(|r| r.n == 0).unwrap();
    for r in all.iter().filter(|r| r.n != 0) {
        assert_eq!(
            r.attempt, 2,
            "the copy that ran is the one requeued after its lease expired, not the stale one: {r:?}"
        );
        assert!(r.started >= blocker.ended, "{r:?}");
    }
    assert_eq!(
        report.stale, 7,
        "the seven claimed with the blocking job went stale"
    );
    assert_eq!((report.succeeded, report.failed, report.dead), (8, 0, 0));
    let stats = storage.stats(&storage.keys(queue)).await.unwrap();
    assert_eq!((stats.completed, stats.pending, stats.running), (8, 0, 0));
}
