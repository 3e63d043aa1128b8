//! Periodic schedules against real Redis, on the test clock: each due time fires once across
//! workers and restarts, missed-run and overlap policies, DST both ways, removed schedules.
mod common;

use std::sync::LazyLock;
use std::time::Duration;

use quern::{
    Event, EventKind, Events, Inspector, Job, JobContext, JobError, JobOptions, ManualClock, MissedRuns,
    Overlap, Periodic, Registry, Storage, Worker,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, broadcast};

/// The periodic job; no worker of most tests runs it, so its runs stay in its queue to count.
#[derive(Serialize, Deserialize)]
struct Tick {
    n: u32,
}

impl Job for Tick {
    const NAME: &'static str = "periodic_tick";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("ticks")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

/// Gives the worker a queue of its own to work, so that it starts.
#[derive(Serialize, Deserialize)]
struct Other;

impl Job for Other {
    const NAME: &'static str = "periodic_other";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("other")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

/// A run of the overlap test: holds until the test lets it go.
#[derive(Serialize, Deserialize)]
struct Slow;

static RELEASE: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(0));

impl Job for Slow {
    const NAME: &'static str = "periodic_slow";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("slow")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        RELEASE.acquire().await.expect("open").forget();
        Ok(())
    }
}

const T0: u64 = 1_800_000_000_000; // a multiple of 10 s

fn worker(
    storage: &Storage,
    registry: Registry,
    clock: &ManualClock,
    events: &Events,
) -> common::RunningWorker {
    let w = Worker::new(storage.clone(), registry)
        .clock(clock.clock())
        .events(events.clone())
        .configure(|c| c.block = Duration::from_millis(100));
    common::RunningWorker::start(w)
}

fn every_10s(name: &str) -> Periodic {
    Periodic::every(name, Duration::from_secs(10)).unwrap()
}

/// The next `kind` event of a periodic run (id `cron:…`), within 10 s.
async fn next(rx: &mut broadcast::Receiver<Event>, kind: EventKind) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.expect("no event lost");
            if e.kind == kind && e.job_id.starts_with("cron:") {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a {kind:?} event of a periodic run within 10 s"))
}

/// The ids of the runs in queue `ticks`, sorted.
async fn runs(storage: &Storage) -> Vec<String> {
    let jobs = Inspector::new(storage.clone())
        .queued_jobs("ticks", 1000)
        .await
        .unwrap();
    let mut ids: Vec<String> = jobs.into_iter().map(|j| j.id).collect();
    ids.sort();
    ids
}

/// Waits until a starting worker has registered schedule `name` of `queue` (it starts from the
/// clock's time then), so that moving the clock afterwards makes due times.
async fn known(storage: &Storage, queue: &str, name: &str) {
    let keys = storage.keys(queue);
    let registered = common::wait_until(Duration::from_secs(10), || async {
        storage
            .periodic_state(&keys, name)
            .await
            .unwrap()
            .last_due_ms
            .is_some()
    })
    .await;
    assert!(registered, "schedule {name:?} registered within 10 s");
}

fn id(name: &str, ms: u64) -> String {
    format!("cron:{name}:{ms}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_and_a_restart_write_one_job_per_due_time() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let clock = ManualClock::at(T0);
    let events = Events::new(1024);
    let mut rx = events.subscribe();
    let registry = || {
        Registry::new()
            .register::<Other>()
            .periodic(every_10s("beat"), Tick { n: 1 })
            .unwrap()
    };
    let a = worker(&storage, registry(), &clock, &events);
    let b = worker(&storage, registry(), &clock, &events);
    known(&storage, "ticks", "beat").await;
    for k in 1..=3 {
        clock.set(T0 + k * 10_000);
        assert_eq!(
            &*next(&mut rx, EventKind::Enqueued).await.job_id,
            id("beat", T0 + k * 10_000)
        );
    }
    // One worker restarts between two due times; the other goes on.
    a.stop().await;
    clock.set(T0 + 40_000);
    assert_eq!(
        &*next(&mut rx, EventKind::Enqueued).await.job_id,
        id("beat", T0 + 40_000)
    );
    let a = worker(&storage, registry(), &clock, &events);
    clock.set(T0 + 50_000);
    assert_eq!(
        &*next(&mut rx, EventKind::Enqueued).await.job_id,
        id("beat", T0 + 50_000)
    );
    a.stop().await;
    b.stop().await;
    let expected: Vec<String> = (1..=5).map(|k| id("beat", T0 + k * 10_000)).collect();
    assert_eq!(
        runs(&storage).await,
        expected,
        "exactly one job per due time, none missing"
    );
}

/// Schedule `m` with `policy`, known since T0, all workers down for 96 s (the 90 s due time is
/// 6 s late when a worker sees it: more than the 5 s tolerance, so missed).
async fn after_downtime(policy: MissedRuns, catch_up: usize) -> Vec<String> {
    let storage = common::storage(&test_support::redis_url()).await;
    let clock = ManualClock::at(T0);
    let events = Events::new(1024);
    let mut rx = events.subscribe();
    let registry = || {
        Registry::new()
            .register::<Other>()
            .periodic(every_10s("m").missed_runs(policy), Tick { n: 1 })
            .unwrap()
    };
    // Known from T0, then every worker stops.
    let w = worker(&storage, registry(), &clock, &events);
    known(&storage, "ticks", "m").await;
    w.stop().await;
    clock.set(T0 + 96_000);
    let w = worker(&storage, registry(), &clock, &events);
    let mut seen = Vec::new();
    // The catch-up runs this policy is expected to fire, awaited before the clock moves on (a
    // policy firing more shows them in `seen` below).
    for _ in 0..catch_up {
        seen.push(next(&mut rx, EventKind::Enqueued).await.job_id.to_string());
    }
    // The next due time is on time whatever the policy.
    clock.set(T0 + 100_000);
    loop {
        let e = next(&mut rx, EventKind::Enqueued).await;
        seen.push(e.job_id.to_string());
        if *e.job_id == id("m", T0 + 100_000) {
            break;
        }
    }
    w.stop().await;
    assert_eq!(
        runs(&storage).await,
        seen,
        "every run enqueued is in the queue once"
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_runs_fire_once_by_default() {
    common::init_tracing();
    let runs = after_downtime(MissedRuns::FireOnce, 1).await;
    assert_eq!(
        runs,
        [id("m", T0 + 90_000), id("m", T0 + 100_000)],
        "the latest missed run, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_runs_can_be_skipped() {
    common::init_tracing();
    let runs = after_downtime(MissedRuns::Skip, 0).await;
    assert_eq!(runs, [id("m", T0 + 100_000)], "only the run on time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_runs_can_be_backfilled_up_to_a_count_and_a_window() {
    common::init_tracing();
    let policy = MissedRuns::Backfill {
        max: 5,
        window: Duration::from_secs(60),
    };
    let runs = after_downtime(policy, 5).await;
    // Missed: 10 s .. 90 s; within 60 s of 96 s: 40 s .. 90 s (6), the latest 5 of them.
    let expected: Vec<String> = [50, 60, 70, 80, 90, 100]
        .iter()
        .map(|s| id("m", T0 + s * 1000))
        .collect();
    assert_eq!(runs, expected);
}

fn utc_ms(s: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis() as u64
}

/// Runs a Europe/Berlin schedule from `start`, stepping the clock to each of `steps`; returns
/// the runs written. Backfill: any due time the schedule computed would be fired.
async fn berlin(expr: &str, start: &str, steps: &[&str], last: &str) -> Vec<String> {
    let storage = common::storage(&test_support::redis_url()).await;
    let clock = ManualClock::at(utc_ms(start));
    let events = Events::new(1024);
    let mut rx = events.subscribe();
    let periodic = Periodic::cron("berlin", expr)
        .unwrap()
        .time_zone("Europe/Berlin")
        .unwrap()
        .missed_runs(MissedRuns::Backfill {
            max: 100,
            window: Duration::from_secs(86_400),
        });
    let registry = Registry::new()
        .register::<Other>()
        .periodic(periodic, Tick { n: 2 })
        .unwrap();
    let w = worker(&storage, registry, &clock, &events);
    known(&storage, "ticks", "berlin").await;
    for step in steps {
        clock.set(utc_ms(step));
    }
    let last = id("berlin", utc_ms(last));
    while *next(&mut rx, EventKind::Enqueued).await.job_id != last {}
    w.stop().await;
    runs(&storage).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_time_that_does_not_exist_fires_once_at_the_next_valid_instant() {
    common::init_tracing();
    // 2025-03-30, Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 never happens that day.
    let runs = berlin(
        "0 30 2 * * *",
        "2025-03-29T23:00:00Z",
        &["2025-03-31T00:30:00Z"],
        "2025-03-31T00:30:00Z",
    )
    .await;
    let mut expected = vec![
        id("berlin", utc_ms("2025-03-30T01:00:00Z")), // 03:00 CEST, the first valid instant
        id("berlin", utc_ms("2025-03-31T00:30:00Z")), // 02:30 CEST the next day
    ];
    expected.sort();
    assert_eq!(runs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_time_that_happens_twice_fires_once() {
    common::init_tracing();
    // 2025-10-26, Berlin: 03:00 CEST falls back to 02:00 CET; 02:00-02:59 happen twice.
    let runs = berlin(
        "0 */30 * * * *",
        "2025-10-25T23:45:00Z",
        &["2025-10-26T02:00:00Z"],
        "2025-10-26T02:00:00Z",
    )
    .await;
    let mut expected = vec![
        id("berlin", utc_ms("2025-10-26T00:00:00Z")), // 02:00 CEST
        id("berlin", utc_ms("2025-10-26T00:30:00Z")), // 02:30 CEST
        id("berlin", utc_ms("2025-10-26T02:00:00Z")), // 03:00 CET: no 02:00 or 02:30 CET
    ];
    expected.sort();
    assert_eq!(runs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_waits_for_the_previous_run_to_end() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let clock = ManualClock::at(T0);
    let events = Events::new(1024);
    let mut rx = events.subscribe();
    let registry = Registry::new()
        .register::<Slow>()
        .periodic(every_10s("slow").overlap(Overlap::Skip), Slow)
        .unwrap();
    let w = worker(&storage, registry, &clock, &events);
    known(&storage, "slow", "slow").await;
    clock.set(T0 + 10_000);
    assert_eq!(
        &*next(&mut rx, EventKind::Started).await.job_id,
        id("slow", T0 + 10_000)
    );
    // Due while the first run still runs: skipped.
    clock.set(T0 + 20_000);
    let keys = storage.keys("slow");
    let skipped = common::wait_until(Duration::from_secs(10), || async {
        storage
            .periodic_state(&keys, "slow")
            .await
            .unwrap()
            .last_skipped_ms
            == Some(T0 + 20_000)
    })
    .await;
    assert!(skipped, "the second due time is skipped while the first run runs");
    RELEASE.add_permits(1);
    assert_eq!(
        &*next(&mut rx, EventKind::Succeeded).await.job_id,
        id("slow", T0 + 10_000)
    );
    clock.set(T0 + 30_000);
    assert_eq!(
        &*next(&mut rx, EventKind::Enqueued).await.job_id,
        id("slow", T0 + 30_000)
    );
    RELEASE.add_permits(1);
    assert_eq!(
        &*next(&mut rx, EventKind::Succeeded).await.job_id,
        id("slow", T0 + 30_000)
    );
    let report = w.stop().await;
    assert_eq!(report.succeeded, 2, "runs of 10 s and 30 s only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_removed_from_the_code_is_removed_when_the_new_code_starts() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let clock = ManualClock::at(T0);
    let events = Events::new(1024);
    let mut rx = events.subscribe();
    let old = Registry::new()
        .register::<Other>()
        .periodic(every_10s("kept"), Tick { n: 1 })
        .unwrap()
        .periodic(every_10s("dropped"), Tick { n: 2 })
        .unwrap();
    let w = worker(&storage, old, &clock, &events);
    known(&storage, "ticks", "dropped").await;
    clock.set(T0 + 10_000);
    next(&mut rx, EventKind::Enqueued).await;
    next(&mut rx, EventKind::Enqueued).await;
    w.stop().await;
    let keys = storage.keys("ticks");
    let names = |all: Vec<(String, String)>| all.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(storage.periodic_schedules(&keys).await.unwrap()),
        ["dropped", "kept"]
    );

    let new = Registry::new()
        .register::<Other>()
        .periodic(every_10s("kept"), Tick { n: 1 })
        .unwrap();
    let w = worker(&storage, new, &clock, &events);
    clock.set(T0 + 20_000);
    // The schedule still declared fires on, from where it was: no gap, no repeat.
    assert_eq!(
        &*next(&mut rx, EventKind::Enqueued).await.job_id,
        id("kept", T0 + 20_000)
    );
    w.stop().await;
    assert_eq!(names(storage.periodic_schedules(&keys).await.unwrap()), ["kept"]);
    let dropped = storage.periodic_state(&keys, "dropped").await.unwrap();
    assert_eq!(dropped.last_due_ms, None, "its state is gone too");
    let mut expected = vec![
        id("dropped", T0 + 10_000),
        id("kept", T0 + 10_000),
        id("kept", T0 + 20_000),
    ];
    expected.sort();
    assert_eq!(runs(&storage).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_schedules_and_runs_one_now() {
    use clap::Parser;
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let clock = ManualClock::at(T0);
    let events = Events::new(1024);
    let registry = Registry::new()
        .register::<Other>()
        .periodic(every_10s("cli"), Tick { n: 7 })
        .unwrap();
    let w = worker(&storage, registry, &clock, &events);
    known(&storage, "ticks", "cli").await;
    w.stop().await;
    let cli = |args: &[&str]| {
        let prefix = storage.config().prefix.clone();
        let mut all = vec!["quern", "--redis-url", "redis://127.0.0.1:6379", "--prefix"];
        all.push(Box::leak(prefix.into_boxed_str()));
        all.extend_from_slice(args);
        quern::cli::Cli::try_parse_from(all).unwrap()
    };
    let run = |c| quern::cli::execute(c, Registry::new(), |w, _| w, std::future::pending());
    let code = run(cli(&["cron", "list"])).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let code = run(cli(&["cron", "run", "cli"])).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let jobs = Inspector::new(storage.clone())
        .queued_jobs("ticks", 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one run enqueued now");
    assert!(jobs[0].id.starts_with("cron:cli:run:"), "{}", jobs[0].id);
    assert!(
        jobs[0]
            .envelope
            .as_deref()
            .unwrap_or_default()
            .contains(r#""n":7"#),
        "{:?}",
        jobs[0]
    );
    let code = run(cli(&["cron", "run", "nope"])).await.unwrap();
    assert_eq!(
        code,
        std::process::ExitCode::FAILURE,
        "an unknown schedule is refused"
    );
}
