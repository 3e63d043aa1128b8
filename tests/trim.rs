//! Completed jobs are acknowledged and their stream entries trimmed in blocks. Trimming never
//! removes a leased or unread entry; a long lease holds it back, and then completed entries are
//! deleted one by one so the stream stays bounded.
mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::RunningWorker;
use quern::{Job, JobContext, JobError, JobOptions, Producer, QueueKeys, Registry, Storage, Worker};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

static RUNS: Mutex<Option<HashMap<u64, u32>>> = Mutex::new(None);
static LONG_STARTED: AtomicBool = AtomicBool::new(false);
static LONG_RELEASE: Notify = Notify::const_new();

#[derive(Serialize, Deserialize)]
struct Fast {
    n: u64,
}

impl Job for Fast {
    const NAME: &'static str = "fast";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("trim")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        *RUNS
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .entry(self.n)
            .or_default() += 1;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Long {}

impl Job for Long {
    const NAME: &'static str = "long";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("trim")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        LONG_STARTED.store(true, Ordering::SeqCst);
        LONG_RELEASE.notified().await;
        Ok(())
    }
}

async fn xlen(storage: &Storage, keys: &QueueKeys) -> u64 {
    let mut con = redis::Client::open(test_support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _ = storage;
    redis::cmd("XLEN")
        .arg(&keys.stream)
        .query_async(&mut con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_are_trimmed_and_a_long_lease_bounds_what_is_kept() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("trim");
    let producer = Producer::new(storage.clone());
    let worker = Worker::new(
        storage.clone(),
        Registry::new().register::<Fast>().register::<Long>(),
    )
    .configure(|c| c.concurrency = 64);
    let w = RunningWorker::start(worker);

    producer.enqueue(&Long {}).await.unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            LONG_STARTED.load(Ordering::SeqCst)
        })
        .await,
        "the long job started"
    );
    // 3,000 short jobs spread over 3 s while the long one holds its lease: entries enqueued more
    // than a second after it are deleted as they complete; the earlier ones wait for it.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for round in 0..30u64 {
        tick.tick().await;
        let jobs: Vec<Fast> = (round * 100..round * 100 + 100).map(|n| Fast { n }).collect();
        producer.enqueue_many(&jobs).await.unwrap();
    }
    assert!(
        common::wait_until(Duration::from_secs(60), || async {
            storage.stats(&keys).await.unwrap().completed >= 3_000
        })
        .await,
        "short jobs completed: {:?}",
        storage.stats(&keys).await.unwrap()
    );
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.running), (0, 1), "{stats:?}");
    assert_eq!(
        storage.waiting_without_lag(&keys).await.unwrap(),
        Some(0),
        "the count Redis 6.2 uses agrees"
    );
    let kept = xlen(&storage, &keys).await;
    println!("entries kept while the long job ran: {kept} (1 leased + completed ones behind it)");
    assert!(
        (1..=1_800).contains(&kept),
        "a long lease keeps about a second of completed entries, not all 3,000: {kept}"
    );
    let found = quern::Inspector::new(storage.clone())
        .find_job("no-such-job", Some(&keys.queue))
        .await
        .unwrap();
    assert!(found.is_none());

    LONG_RELEASE.notify_one();
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            storage.stats(&keys).await.unwrap().completed >= 3_001
        })
        .await
    );
    // The worker trims within a tenth of a second of the last completion.
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            xlen(&storage, &keys).await == 0
        })
        .await,
        "every completed entry trimmed: {} left",
        xlen(&storage, &keys).await
    );
    let report = w.stop().await;
    assert_eq!(report.succeeded, 3_001);
    let runs = RUNS.lock().unwrap().take().unwrap_or_default();
    assert_eq!(runs.len(), 3_000, "every short job ran");
    assert!(runs.values().all(|&n| n == 1), "and exactly once");
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_leaves_what_another_consumer_group_has_not_read() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("trim_audit");
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Audited> = (0..500).map(|n| Audited { n }).collect();
    producer.enqueue_many(&jobs).await.unwrap();
    let mut con = redis::Client::open(test_support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Someone else reads the same stream with a group of their own.
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg("audit")
        .arg("0")
        .query_async(&mut con)
        .await
        .unwrap();

    let w = RunningWorker::start(Worker::new(
        storage.clone(),
        Registry::new().register::<Audited>(),
    ));
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            storage.stats(&keys).await.unwrap().completed >= 500
        })
        .await
    );
    w.stop().await;
    let report = storage.trim_acked(&keys).await.unwrap();
    assert_eq!(report.trimmed, 0, "{report:?}");
    assert_eq!(
        xlen(&storage, &keys).await,
        500,
        "the audit group has read none of them"
    );
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.completed), (0, 0, 500));
    assert_eq!(storage.waiting_without_lag(&keys).await.unwrap(), Some(0));

    let () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&keys.stream)
        .arg("audit")
        .query_async::<i64>(&mut con)
        .await
        .map(|_| ())
        .unwrap();
    let report = storage.trim_acked(&keys).await.unwrap();
    assert_eq!(report.trimmed, 500, "{report:?}");
    assert_eq!(xlen(&storage, &keys).await, 0);
    storage.delete_queue(&keys).await.unwrap();
}

#[derive(Serialize, Deserialize)]
struct Audited {
    n: u64,
}

impl Job for Audited {
    const NAME: &'static str = "audited";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("trim_audit")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        let _ = self.n;
        Ok(())
    }
}
