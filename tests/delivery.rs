//! Delivery: backlog, idle pickup, delayed jobs, raw producers, unknown job types.
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use common::RunningWorker;
use quern::{Job, JobContext, JobError, JobOptions, Producer, Registry, Worker};
use serde::{Deserialize, Serialize};

/// Records when each job started, by `n`.
static STARTS: Mutex<Vec<(String, u64, Instant)>> = Mutex::new(Vec::new());

#[derive(Serialize, Deserialize)]
struct Mark {
    tag: String,
    n: u64,
    #[serde(default)]
    sleep_ms: u64,
}

impl Job for Mark {
    const NAME: &'static str = "mark";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("delivery")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        STARTS.lock().unwrap().push((self.tag, self.n, Instant::now()));
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        Ok(())
    }
}

fn starts(tag: &str) -> Vec<(u64, Instant)> {
    STARTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, ..)| t == tag)
        .map(|(_, n, at)| (*n, *at))
        .collect()
}

async fn worker(storage: &quern::Storage) -> RunningWorker {
    let w =
        Worker::new(storage.clone(), Registry::new().register::<Mark>()).configure(|c| c.concurrency = 256);
    RunningWorker::start(w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_at_once_and_delayed_jobs_start_on_time() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("delivery");
    let producer = Producer::new(storage.clone());
    let w = worker(&storage).await;
    // Let the worker go idle (blocked on Redis).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut pickups = Vec::new();
    for n in 0..20 {
        let sent = Instant::now();
        producer
            .enqueue(&Mark {
                tag: "idle".into(),
                n,
                sleep_ms: 0,
            })
            .await
            .unwrap();
        assert!(
            common::wait_until(Duration::from_secs(5), || async {
                starts("idle").iter().any(|(m, _)| *m == n)
            })
            .await,
            "job {n} never started"
        );
        let started = starts("idle").into_iter().find(|(m, _)| *m == n).unwrap().1;
        pickups.push(started.duration_since(sent));
        tokio::time::sleep(Duration::from_millis(20 + n * 3)).await;
    }
    pickups.sort();
    let p50 = pickups[pickups.len() / 2];
    eprintln!("idle pickup p50 {p50:?}, max {:?}", pickups.last().unwrap());
    // Generous bound: polling queues answer in tens or hundreds of ms; a blocked read in about one.
    assert!(p50 < Duration::from_millis(50), "idle pickup p50 {p50:?}");

    // Delayed jobs, while idle and while busy.
    let mut lateness = Vec::new();
    for (i, delay_ms) in [150u64, 220, 300].into_iter().enumerate() {
        let due = SystemTime::now() + Duration::from_millis(delay_ms);
        let due_instant = Instant::now() + Duration::from_millis(delay_ms);
        let n = 1000 + i as u64;
        producer
            .enqueue_at(
                &Mark {
                    tag: "delayed".into(),
                    n,
                    sleep_ms: 0,
                },
                due,
            )
            .await
            .unwrap();
        if i == 2 {
            // Keep the worker busy (200 jobs running) while the last one becomes due. A backlog
            // ahead of it would be served first: promoted jobs join the tail of the queue.
            let busy: Vec<Mark> = (0..200)
                .map(|n| Mark {
                    tag: "busy".into(),
                    n,
                    sleep_ms: 600,
                })
                .collect();
            producer.enqueue_many(&busy).await.unwrap();
        }
        assert!(
            common::wait_until(Duration::from_secs(5), || async {
                starts("delayed").iter().any(|(m, _)| *m == n)
            })
            .await,
            "delayed job {n} never started"
        );
        let started = starts("delayed").into_iter().find(|(m, _)| *m == n).unwrap().1;
        assert!(
            started + Duration::from_millis(2) >= due_instant,
            "delayed job {n} started early"
        );
        lateness.push(started.saturating_duration_since(due_instant));
    }
    eprintln!("delayed job lateness: {lateness:?}");
    assert!(
        lateness.iter().all(|l| *l < Duration::from_millis(100)),
        "{lateness:?}"
    );
    w.stop().await;
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueued_with_raw_redis_commands_run() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let keys = storage.keys("delivery");
    let prefix = storage.config().prefix.clone();
    let w = worker(&storage).await;
    // Exactly the commands docs/wire-format.md gives a producer in another language.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{prefix}:{{delivery}}:stream");
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let env = format!(
        r#"{{"id":"raw-1","job":"mark","queue":"delivery","attempt":1,"enqueued_at":{now_ms},"payload":{{"tag":"raw","n":1}}}}"#
    );
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("e")
        .arg(&env)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Minimal envelope: only id, job and payload.
    let minimal = r#"{"id":"raw-2","job":"mark","payload":{"tag":"raw","n":2}}"#;
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("e")
        .arg(minimal)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Delayed: ZADD to the scheduled set, then LPUSH + LTRIM the wake list.
    let delayed = r#"{"id":"raw-3","job":"mark","queue":"delivery","payload":{"tag":"raw","n":3}}"#;
    let due = now_ms + 200;
    redis::pipe()
        .cmd("ZADD")
        .arg(format!("{prefix}:{{delivery}}:scheduled"))
        .arg(due)
        .arg(delayed)
        .cmd("LPUSH")
        .arg(format!("{prefix}:{{delivery}}:wake"))
        .arg(1)
        .cmd("LTRIM")
        .arg(format!("{prefix}:{{delivery}}:wake"))
        .arg(0)
        .arg(0)
        .exec_async(&mut conn)
        .await
        .unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || async { starts("raw").len() == 3 }).await,
        "{:?}",
        starts("raw")
    );
    w.stop().await;
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!(
        (stats.completed, stats.dead, stats.pending, stats.scheduled),
        (3, 0, 0, 0)
    );
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_job_type_is_dead_lettered_and_the_worker_goes_on() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("delivery");
    let producer = Producer::new(storage.clone());
    let w = Worker::new(storage.clone(), Registry::new().register::<Mark>())
        .configure(|c| c.queues = vec!["delivery".into()]);
    let w = RunningWorker::start(w);
    let id = producer
        .enqueue_json("delivery", "no_such_job", r#"{"x":1}"#, None)
        .await
        .unwrap();
    producer
        .enqueue(&Mark {
            tag: "after-unknown".into(),
            n: 1,
            sleep_ms: 0,
        })
        .await
        .unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            let s = storage.stats(&keys).await.unwrap();
            s.dead == 1 && s.completed == 1
        })
        .await
    );
    w.stop().await;
    let record = common::dead_record(&storage, &keys.queue, id.as_str())
        .await
        .expect("dead");
    assert_eq!(record.reason, quern::DeadReason::UnknownJob);
    assert!(
        record.message.starts_with("unknown job type \"no_such_job\""),
        "{}",
        record.message
    );
    assert!(
        record.envelope.unwrap().contains(r#""payload":{"x":1}"#),
        "the job is kept as it was"
    );
    storage.delete_queue(&keys).await.unwrap();
}
