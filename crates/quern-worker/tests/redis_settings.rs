//! Redis settings that lose jobs or refuse them, on private servers: a full Redis under
//! `noeviction` (enqueues refused whole with an out-of-memory error, a worker drains it), and an
//! evicting one (`allkeys-lru`: warned about by the worker, the producer and `quern stats`).

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::{capture_logs, logged, quern, wait_until};
use quern_core::{Job, JobContext, JobError, JobOptions, Shutdown};
use quern_redis::{Inspector, Producer, RedisConfig, Storage};
use quern_worker::{Registry, Worker};
use serde::{Deserialize, Serialize};
use test_support::RedisServer;

const LIMIT: Duration = Duration::from_secs(30);

/// How many times each `Fill` job ran, by its number.
static FILLED: Mutex<Option<HashMap<u64, u32>>> = Mutex::new(None);

#[derive(Serialize, Deserialize)]
struct Fill {
    n: u64,
    pad: String,
}

impl Job for Fill {
    const NAME: &'static str = "fill";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("fill")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        *FILLED
            .lock()
            .unwrap()
            .get_or_insert_default()
            .entry(self.n)
            .or_default() += 1;
        Ok(())
    }
}

fn ran() -> HashMap<u64, u32> {
    FILLED.lock().unwrap().clone().unwrap_or_default()
}

async fn xlen(storage: &Storage, queue: &str) -> u64 {
    let mut conn = redis::Client::open(storage.config().url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("XLEN")
        .arg(&storage.keys(queue).stream)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_redis_refuses_enqueues_whole_and_a_drained_one_takes_them_again() {
    let redis = RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let prefix = test_support::unique_name("oom");
    let storage = Storage::connect(RedisConfig::new(redis.url()).prefix(&prefix))
        .await
        .unwrap();
    let keys = storage.keys("fill");
    // The group of a worker that ran before Redis filled up (a stream nobody ever worked has
    // no group, and Redis refuses to create one when full).
    storage.ensure_group(&keys).await.unwrap();
    let producer = Producer::new(storage.clone());
    let pad = "x".repeat(1000);
    let mut next = 0u64;
    let batch = |next: &mut u64, n: u64| {
        let jobs: Vec<Fill> = (*next..*next + n).map(|n| Fill { n, pad: pad.clone() }).collect();
        *next += n;
        jobs
    };

    // Fill it, a batch of 100 at a time, until Redis refuses one.
    let mut accepted = Vec::new();
    let refusal = loop {
        assert!(next < 100_000, "4 MB never filled up");
        let before = xlen(&storage, "fill").await;
        let jobs = batch(&mut next, 100);
        match producer.enqueue_many(&jobs).await {
            Ok(_) => accepted.extend(jobs.iter().map(|j| j.n)),
            Err(e) => {
                assert_eq!(
                    xlen(&storage, "fill").await,
                    before,
                    "a refused batch wrote nothing"
                );
                break e;
            }
        }
    };
    assert!(refusal.is_out_of_memory(), "{refusal:?}");
    assert!(refusal.is_retryable());
    let text = refusal.to_string();
    assert!(text.contains("Redis is out of memory"), "{text}");
    assert!(
        text.contains("raise maxmemory") && text.contains("drain"),
        "{text}"
    );

    // One job at a time (the shared connection's pipeline) until Redis refuses one too: the
    // batch may have been refused only for the memory its own queued commands took.
    let one = loop {
        assert!(next < 200_000, "single jobs were never refused");
        let before = xlen(&storage, "fill").await;
        let job = batch(&mut next, 1).remove(0);
        match producer.enqueue(&job).await {
            Ok(_) => accepted.push(job.n),
            Err(e) => {
                assert_eq!(
                    xlen(&storage, "fill").await,
                    before,
                    "a refused job wrote nothing"
                );
                break e;
            }
        }
    };
    assert!(one.is_out_of_memory(), "{one:?}");
    // A delayed job (a script) is refused too.
    let before = xlen(&storage, "fill").await;
    let later = producer
        .enqueue_in(&batch(&mut next, 1).remove(0), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(later.is_out_of_memory(), "{later:?}");
    assert_eq!(xlen(&storage, "fill").await, before);
    assert_eq!(storage.stats(&keys).await.unwrap().scheduled, 0);

    // A worker started on the full Redis drains it: completions go through under OOM.
    let stop = Shutdown::new();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Fill>())
        .configure(|c| c.queues = vec!["fill".into()]);
    let running = tokio::spawn(worker.run(quern_worker::cli::shutdown_from(&stop)));
    let total = accepted.len();
    wait_until(LIMIT, "the worker to run every accepted job", || async {
        ran().len() >= total
    })
    .await;

    // Memory freed (acknowledged entries trimmed): enqueues succeed again, in bulk and alone.
    let mut more = Vec::new();
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < LIMIT, "Redis never took a batch again");
        let jobs = batch(&mut next, 50);
        match producer.enqueue_many(&jobs).await {
            Ok(_) => {
                more.extend(jobs.iter().map(|j| j.n));
                break;
            }
            Err(e) if e.is_out_of_memory() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    let single = batch(&mut next, 1).remove(0);
    more.push(single.n);
    producer.enqueue(&single).await.unwrap();
    accepted.extend(more);
    let total = accepted.len();
    wait_until(LIMIT, "the worker to run the later jobs", || async {
        ran().len() >= total
    })
    .await;
    stop.trigger();
    running.await.unwrap().unwrap();

    let ran = ran();
    assert_eq!(ran.len(), total, "only accepted jobs ran");
    for n in &accepted {
        assert_eq!(ran.get(n), Some(&1), "job {n} ran exactly once");
    }
}

#[derive(Serialize, Deserialize)]
struct Idle {}

impl Job for Idle {
    const NAME: &'static str = "idle";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("lru")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

/// The WARN lines about an evicting policy logged by `who` (`producer`, `worker`).
fn eviction_warnings(who: &str) -> usize {
    logged()
        .lines()
        .filter(|l| {
            l.contains("WARN")
                && l.contains("maxmemory-policy is `allkeys-lru`")
                && l.contains("CONFIG SET maxmemory-policy noeviction")
                && l.contains(&format!("who=\"{who}\""))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_warned_about_by_the_worker_the_producer_and_stats() {
    capture_logs();
    let redis = RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]);
    let prefix = test_support::unique_name("lru");
    let config = RedisConfig::new(redis.url()).prefix(&prefix);

    let producer = Producer::connect(config.clone()).await.unwrap();
    assert_eq!(
        eviction_warnings("producer"),
        1,
        "one WARN at connect:\n{}",
        logged()
    );
    producer.enqueue(&Idle {}).await.unwrap();
    producer.clone().enqueue(&Idle {}).await.unwrap();
    assert_eq!(eviction_warnings("producer"), 1, "not one per job");

    let storage = Storage::connect(config).await.unwrap();
    let stop = Shutdown::new();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Idle>());
    let running = tokio::spawn(worker.run(quern_worker::cli::shutdown_from(&stop)));
    wait_until(LIMIT, "the worker's WARN", || async {
        eviction_warnings("worker") == 1
    })
    .await;
    stop.trigger();
    running.await.unwrap().unwrap();

    let health = Inspector::new(storage).server_health().await;
    assert_eq!(health.maxmemory_policy.as_deref(), Some("allkeys-lru"));
    assert_eq!(health.maxmemory, Some(64 * 1024 * 1024));
    assert!(health.evicts() && health.redis_version.is_some() && health.unavailable.is_none());

    let out = quern(&redis.url(), &prefix, &["stats", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["server"]["maxmemory_policy"], "allkeys-lru", "{json}");
    assert_eq!(json["queues"][0]["queue"], "lru", "{json}");

    let out = quern(&redis.url(), &prefix, &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("maxmemory-policy allkeys-lru"), "{text}");
    assert!(text.contains("warning:") && text.contains("noeviction"), "{text}");
}
