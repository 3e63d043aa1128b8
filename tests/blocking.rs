//! A job that blocks its thread does not freeze its worker (BullMQ#439): leases are kept, other
//! jobs keep running, and the watchdog says so once.
//!
//! Two workers, each on a runtime (two threads) of its own, like two processes; a 1 s lease; one
//! job sleeps its thread for 4 s inside `run`, with the default `Isolation::Task`.
mod common;

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use quern::{
    Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Registry, Shutdown, Storage, Worker,
    WorkerReport,
};
use serde::{Deserialize, Serialize};

const LEASE: Duration = Duration::from_secs(1);
const BLOCK: Duration = Duration::from_secs(4);

/// With `block`, sleeps its thread for [`BLOCK`]; otherwise sleeps 20 ms the async way.
#[derive(Serialize, Deserialize)]
struct Step {
    n: u64,
    block: bool,
}

static BLOCKER_RUNS: AtomicU32 = AtomicU32::new(0);
static BLOCKER_ATTEMPT: AtomicU32 = AtomicU32::new(0);
/// When the blocking run started and ended.
static BLOCKED: Mutex<(Option<Instant>, Option<Instant>)> = Mutex::new((None, None));
/// Each quick run: its number, the thread it ran on (named after its worker), when it ended.
static QUICK: Mutex<Vec<(u64, String, Instant)>> = Mutex::new(Vec::new());

impl Job for Step {
    const NAME: &'static str = "step";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new().queue("blocking").max_attempts(3)
    }

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        if self.block {
            BLOCKER_RUNS.fetch_add(1, SeqCst);
            BLOCKER_ATTEMPT.store(ctx.attempt, SeqCst);
            BLOCKED.lock().unwrap().0 = Some(Instant::now());
            std::thread::sleep(BLOCK); // the mistake under test
            BLOCKED.lock().unwrap().1 = Some(Instant::now());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        QUICK.lock().unwrap().push((self.n, thread, Instant::now()));
        Ok(())
    }
}

/// Everything the workers log at `warn` and above, without timestamps.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Kept, not printed: a passing run stays quiet; a failing one shows it (`PrintOnFailure`).
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints the workers' log (into the test's captured output) when the test fails.
struct PrintOnFailure;

impl Drop for PrintOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the workers logged:\n{}",
                String::from_utf8_lossy(&LOG.lock().unwrap())
            );
        }
    }
}

fn capture_logs() {
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_ansi(false)
        .without_time()
        .with_writer(|| LogWriter)
        .init();
}

/// A worker on a runtime of its own (two threads named `name`), as a process would have.
fn start_worker(
    name: &'static str,
    url: &str,
    prefix: &str,
    stop: &Shutdown,
) -> std::thread::JoinHandle<WorkerReport> {
    let (url, prefix, stop) = (url.to_owned(), prefix.to_owned(), stop.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let storage = Storage::connect(RedisConfig::new(&url).prefix(prefix))
                .await
                .unwrap();
            Worker::new(storage, Registry::new().register::<Step>())
                .configure(|c| {
                    c.lease = LEASE;
                    c.concurrency = 8;
                    c.block = Duration::from_millis(200);
                    c.consumer = name.to_owned();
                })
                .run(quern::shutdown_from(&stop))
                .await
                .unwrap()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_blocking_its_thread_does_not_freeze_its_worker() {
    capture_logs();
    let _print_on_failure = PrintOnFailure;
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let producer = Producer::new(storage.clone());
    let stop = Shutdown::new();

    let a = start_worker("worker-a", &url, &prefix, &stop);
    let blocker = producer.enqueue(&Step { n: 0, block: true }).await.unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            BLOCKED.lock().unwrap().0.is_some()
        })
        .await,
        "the blocking job started on worker a"
    );
    let b = start_worker("worker-b", &url, &prefix, &stop);
    // Quick jobs arrive all through the block; both workers claim them.
    let quick = 30;
    for n in 1..=quick {
        producer.enqueue(&Step { n, block: false }).await.unwrap();
        tokio::time::sleep(BLOCK / 40).await;
    }
    let done = common::wait_until(Duration::from_secs(20), || async {
        BLOCKED.lock().unwrap().1.is_some() && QUICK.lock().unwrap().len() as u64 == quick
    })
    .await;
    assert!(done, "every job ran: {:?}", QUICK.lock().unwrap());
    // Longer than a lease and a reaper's period: a lease lost during the block would be
    // requeued, and the job run again, by now.
    tokio::time::sleep(LEASE * 2).await;
    stop.trigger();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());

    assert_eq!(BLOCKER_RUNS.load(SeqCst), 1, "the blocking job ran once");
    assert_eq!(
        BLOCKER_ATTEMPT.load(SeqCst),
        1,
        "in its first attempt: its lease never expired"
    );
    let (started, ended) = {
        let b = BLOCKED.lock().unwrap();
        (b.0.unwrap(), b.1.unwrap())
    };
    let quick_runs = QUICK.lock().unwrap().clone();
    let mut seen: Vec<u64> = quick_runs.iter().map(|r| r.0).collect();
    seen.sort();
    assert_eq!(seen, (1..=quick).collect::<Vec<_>>(), "each quick job ran once");
    let on_a_during_block = quick_runs
        .iter()
        .filter(|(_, thread, at)| thread == "worker-a" && *at > started && *at < ended)
        .count();
    assert!(
        on_a_during_block >= 3,
        "worker a kept running jobs on its other thread while one was blocked: {on_a_during_block} did; {quick_runs:?}"
    );
    assert_eq!(
        (a.succeeded + b.succeeded, a.failed + b.failed, a.dead + b.dead),
        (quick + 1, 0, 0)
    );
    assert_eq!(
        (a.blocked, b.blocked),
        (1, 0),
        "the watchdog saw the blocking job, once"
    );
    assert_eq!((a.stale, b.stale), (0, 0), "every claimed job kept its lease");
    let stats = storage.stats(&storage.keys("blocking")).await.unwrap();
    assert_eq!((stats.completed, stats.pending, stats.running), (quick + 1, 0, 0));

    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let watchdog: Vec<&&str> = lines.iter().filter(|l| l.contains("held its thread")).collect();
    assert_eq!(watchdog.len(), 1, "the watchdog line, once: {log}");
    assert!(
        watchdog[0].contains(&format!("job={blocker}"))
            && watchdog[0].contains("name=step")
            && watchdog[0].contains("Isolation::Runtime"),
        "it names the job and the remedy: {}",
        watchdog[0]
    );
    assert!(
        !log.contains("lease"),
        "no lease expired, no delivery went stale, nothing was requeued: {log}"
    );
    assert_eq!(lines.len(), 1, "nothing else went wrong: {log}");
}
