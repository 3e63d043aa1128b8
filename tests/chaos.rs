//! Chaos: workers killed at random, Redis restarted mid-run. Every job completes at least once.
mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use quern::{Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Storage};
use serde::{Deserialize, Serialize};

/// The producer's view of `examples/worker.rs`'s `record` job: the worker runs it.
#[derive(Serialize, Deserialize)]
struct Record {
    key: String,
    id: u64,
    sleep_ms: u64,
}

impl Job for Record {
    const NAME: &'static str = "record";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("chaos").max_attempts(25)
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        unreachable!("run by the example worker")
    }
}

async fn enqueue(storage: &Storage, key: &str, n: u64, sleep_ms: u64) {
    let jobs: Vec<Record> = (0..n)
        .map(|id| Record {
            key: key.into(),
            id,
            sleep_ms,
        })
        .collect();
    Producer::new(storage.clone()).enqueue_many(&jobs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_jobs_survive_workers_killed_every_second() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let keys = storage.keys("chaos");
    let runs_key = format!("{prefix}:runs");
    const JOBS: u64 = 20_000;
    // 3 workers x 32 slots x 50 ms: about ten seconds of work, with a kill about every second.
    enqueue(&storage, &runs_key, JOBS, 50).await;

    let mut workers: Vec<Child> = (0..3)
        .map(|_| common::spawn_worker(&url, &prefix, "chaos", 32, &[]))
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    let deadline = started + Duration::from_secs(180);
    let mut done = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(700 + rand_ms(600))).await;
        done = common::runs(&url, &runs_key).await.len() as u64;
        if done == JOBS {
            break;
        }
        let victim = rand_ms(3) as usize;
        workers[victim].kill().unwrap(); // SIGKILL
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = common::spawn_worker(&url, &prefix, "chaos", 32, &[]);
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let runs = common::runs(&url, &runs_key).await;
    let duplicates: u64 = runs.values().map(|c| c - 1).sum();
    eprintln!(
        "chaos: {} of {JOBS} jobs completed in {:.1} s with {kills} workers killed; {duplicates} duplicate executions",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(runs.len() as u64, JOBS, "lost jobs (last count {done})");
    assert!(
        kills >= 3,
        "the workers were killed during the run ({kills} kills)"
    );
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!(stats.dead, 0, "{stats:?}");
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_after_a_redis_restart_and_finish_every_job() {
    common::init_tracing();
    let mut server =
        test_support::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let storage = Storage::connect(RedisConfig::new(&url).prefix("chaos"))
        .await
        .unwrap();
    let keys = storage.keys("chaos");
    let runs_key = "chaos:runs".to_owned();
    const JOBS: u64 = 3_000;
    enqueue(&storage, &runs_key, JOBS, 10).await;
    let mut workers: Vec<Child> = (0..2)
        .map(|_| common::spawn_worker(&url, "chaos", "chaos", 32, &[]))
        .collect();
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            common::runs(&url, &runs_key).await.len() >= 300
        })
        .await
    );
    server.restart();
    let all = common::wait_until(Duration::from_secs(90), || async {
        match redis_runs(&url, &runs_key).await {
            Some(n) => n == JOBS,
            None => false,
        }
    })
    .await;
    for w in &mut workers {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a worker exited after the Redis restart"
        );
        let _ = w.kill();
        let _ = w.wait();
    }
    assert!(
        all,
        "only {:?} of {JOBS} jobs ran",
        redis_runs(&url, &runs_key).await
    );
    // The first command on a connection that saw the restart may fail; the next reconnects.
    let mut stats = storage.stats(&keys).await;
    if stats.is_err() {
        stats = storage.stats(&keys).await;
    }
    assert_eq!(stats.unwrap().dead, 0);
}

/// Distinct jobs recorded, or None while Redis is not answering.
async fn redis_runs(url: &str, key: &str) -> Option<u64> {
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    redis::cmd("HLEN").arg(key).query_async(&mut conn).await.ok()
}

fn rand_ms(below: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos / 7919) % below
}
