//! Nothing lost: a killed worker, a graceful shutdown, a Redis restart.
mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::RunningWorker;
use quern::{Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Registry, Storage, Worker};
use serde::{Deserialize, Serialize};

async fn enqueue_records(
    producer: &Producer,
    queue: &str,
    key: &str,
    ids: std::ops::Range<u64>,
    sleep_ms: u64,
) {
    for id in ids {
        let json = format!(r#"{{"key":"{key}","id":{id},"sleep_ms":{sleep_ms}}}"#);
        producer.enqueue_json(queue, "record", &json, None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_killed_worker_completes_on_another() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let keys = storage.keys("recover");
    let runs_key = format!("{prefix}:runs");
    let producer = Producer::new(storage.clone());
    enqueue_records(&producer, "recover", &runs_key, 0..20, 1500).await;

    let mut first = common::spawn_worker(&url, &prefix, "recover", 100, &[]);
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            storage.stats(&keys).await.unwrap().running == 20
        })
        .await,
        "the first worker never leased the jobs"
    );
    first.kill().unwrap(); // SIGKILL, mid-job
    first.wait().unwrap();
    assert!(
        common::runs(&url, &runs_key).await.is_empty(),
        "killed before any job finished"
    );

    let mut second = common::spawn_worker(&url, &prefix, "recover", 100, &[]);
    // Done means settled, not only run: a kill between the two would rerun the job.
    let all_done = common::wait_until(Duration::from_secs(30), || async {
        common::runs(&url, &runs_key).await.len() == 20 && storage.stats(&keys).await.unwrap().completed == 20
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(all_done, "runs: {:?}", common::runs(&url, &runs_key).await);
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!(
        (stats.pending, stats.dead, stats.completed),
        (0, 0, 20),
        "{stats:?}"
    );
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_short_jobs_and_gives_long_ones_back() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let keys = storage.keys("sigterm");
    let runs_key = format!("{prefix}:runs");
    let producer = Producer::new(storage.clone());
    enqueue_records(&producer, "sigterm", &runs_key, 0..50, 1500).await;
    enqueue_records(&producer, "sigterm", &runs_key, 50..100, 30_000).await;

    let mut worker = common::spawn_worker(&url, &prefix, "sigterm", 100, &["--grace-secs", "4"]);
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            storage.stats(&keys).await.unwrap().running == 100
        })
        .await,
        "not all 100 jobs were in flight: {:?}",
        storage.stats(&keys).await.unwrap()
    );
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = common::wait_until(Duration::from_secs(20), || {
        let done = worker.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    assert!(exited, "the worker did not exit within 20 s of SIGTERM");
    let runs = common::runs(&url, &runs_key).await;
    assert_eq!(
        runs.len(),
        50,
        "the short jobs finished within the grace period: {runs:?}"
    );
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!(
        (stats.pending, stats.running, stats.completed, stats.dead),
        (50, 0, 50, 0),
        "the long jobs went back to the queue: {stats:?}"
    );
    storage.delete_queue(&keys).await.unwrap();
}

static SEEN: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

#[derive(Serialize, Deserialize)]
struct Slow {
    tag: String,
    n: u64,
    ms: u64,
}

impl Job for Slow {
    const NAME: &'static str = "slow";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("recovery")
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.ms)) => {}
            // A cooperative job stops early at shutdown and is given back.
            _ = ctx.shutdown.wait(), if self.ms > 1000 => {
                return Err(JobError::msg("interrupted by shutdown"));
            }
        }
        SEEN.lock().unwrap().push((self.tag, self.n));
        Ok(())
    }
}

fn seen(tag: &str) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for (_, n) in SEEN.lock().unwrap().iter().filter(|(t, _)| t == tag) {
        *m.entry(*n).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_nothing() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("recovery");
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Slow> = (0..300)
        .map(|n| Slow {
            tag: "graceful".into(),
            n,
            ms: 50,
        })
        .collect();
    producer.enqueue_many(&jobs).await.unwrap();
    let w = Worker::new(storage.clone(), Registry::new().register::<Slow>()).configure(|c| {
        c.concurrency = 20;
        c.grace = Duration::from_millis(200);
    });
    let w = RunningWorker::start(w);
    assert!(common::wait_until(Duration::from_secs(10), || async { seen("graceful").len() >= 40 }).await);
    let report = w.stop().await;
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!(stats.running, 0, "nothing stays leased to a stopped worker");
    assert_eq!(stats.pending + stats.completed, 300, "{stats:?}");
    assert_eq!(report.succeeded, stats.completed);
    // A second worker finishes the rest; every job ran exactly once.
    let w = RunningWorker::start(Worker::new(storage.clone(), Registry::new().register::<Slow>()));
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            seen("graceful").len() == 300
        })
        .await
    );
    w.stop().await;
    assert!(seen("graceful").values().all(|&c| c == 1), "no job ran twice");
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_redis_restart() {
    common::init_tracing();
    let mut server =
        test_support::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let storage = Storage::connect(RedisConfig::new(server.url())).await.unwrap();
    let keys = storage.keys("recovery");
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Slow> = (0..400)
        .map(|n| Slow {
            tag: "restart".into(),
            n,
            ms: 20,
        })
        .collect();
    producer.enqueue_many(&jobs).await.unwrap();
    let w = Worker::new(storage.clone(), Registry::new().register::<Slow>()).configure(|c| {
        c.concurrency = 10;
        c.lease = Duration::from_secs(2);
    });
    let w = RunningWorker::start(w);
    assert!(common::wait_until(Duration::from_secs(10), || async { seen("restart").len() >= 50 }).await);
    server.restart();
    let all = common::wait_until(Duration::from_secs(60), || async { seen("restart").len() >= 400 }).await;
    assert!(
        all,
        "only {} of 400 jobs ran after the restart",
        seen("restart").len()
    );
    let settled = common::wait_until(Duration::from_secs(20), || async {
        storage
            .stats(&keys)
            .await
            .map(|s| s.pending == 0 && s.running == 0)
            .unwrap_or(false)
    })
    .await;
    w.stop().await;
    assert!(settled, "{:?}", storage.stats(&keys).await);
    assert!(w_is_clean(&storage, &keys).await);
}

async fn w_is_clean(storage: &Storage, keys: &quern::parts::redis::QueueKeys) -> bool {
    let s = storage.stats(keys).await.unwrap();
    s.dead == 0 && s.retrying == 0
}
