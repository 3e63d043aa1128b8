//! Unique jobs against real Redis: one job per key while it holds, and a lock that never
//! outlives its job.
mod common;

use std::time::Duration;

use quern::{
    Backoff, Cancelled, EnqueueOptions, EventKind, Events, Inspector, Job, JobContext, JobError, JobOptions,
    Producer, Registry, Storage, StorageError, Unique, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};

/// Charges an invoice: unique per invoice while queued, running or retrying.
#[derive(Serialize, Deserialize, Clone)]
struct Charge {
    invoice: u64,
    /// `ok`, `fail` (permanent), or `wait` (runs until cancelled).
    how: String,
}

impl Job for Charge {
    const NAME: &'static str = "uq_charge";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("uq")
            .max_attempts(2)
            .backoff(Backoff::Fixed(Duration::from_millis(10)))
    }
    fn unique(&self) -> Option<Unique> {
        Some(Unique::new(format!("invoice:{}", self.invoice)))
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        match self.how.as_str() {
            "fail" => Err(JobError::permanent("card declined")),
            "wait" => {
                ctx.cancelled().await;
                Err(JobError::msg("stopped: cancelled"))
            }
            _ => Ok(()),
        }
    }
}

fn charge(invoice: u64, how: &str) -> Charge {
    Charge {
        invoice,
        how: how.into(),
    }
}

fn worker(storage: &Storage, events: &Events, grace: Duration) -> Worker {
    let mut config = WorkerConfig::default();
    config.control_poll = Duration::from_millis(50);
    config.cancel_grace = Duration::from_millis(100);
    config.grace = grace;
    config.block = Duration::from_millis(100);
    Worker::new(storage.clone(), Registry::new().register::<Charge>())
        .config(config)
        .events(events.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_of_one_key_make_one_job() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let producer = producer.clone();
            tokio::spawn(async move {
                producer
                    .enqueue_with(&charge(1, "ok"), EnqueueOptions::new())
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    let written: Vec<_> = results.iter().filter(|r| !r.duplicate).collect();
    assert_eq!(written.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|r| r.id == written[0].id),
        "every duplicate names the holder"
    );
    assert_eq!(storage.stats(&storage.keys("uq")).await.unwrap().pending, 1);

    // Another key is another job; a key over the limit is refused, nothing written.
    assert!(
        !producer
            .enqueue_with(&charge(2, "ok"), EnqueueOptions::new())
            .await
            .unwrap()
            .duplicate
    );
    let long = EnqueueOptions::new().unique(Unique::new("k".repeat(257)));
    let err = producer.enqueue_with(&charge(3, "ok"), long).await.unwrap_err();
    assert!(err.to_string().contains("over the limit of 256 bytes"), "{err}");
    assert_eq!(storage.stats(&storage.keys("uq")).await.unwrap().pending, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_goes_with_its_job_complete_dead_or_cancelled() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let first = |how: &'static str, n: u64| {
        let producer = producer.clone();
        async move {
            producer
                .enqueue_with(&charge(n, how), EnqueueOptions::new())
                .await
                .unwrap()
        }
    };

    // Cancelled while queued: the key is free at once.
    let queued = first("ok", 10).await;
    assert!(first("ok", 10).await.duplicate);
    assert!(matches!(
        inspector.cancel(queued.id.as_str(), None).await.unwrap(),
        Cancelled::Removed { .. }
    ));
    let again = first("ok", 10).await;
    assert!(!again.duplicate && again.id != queued.id);

    // Delayed: it holds until it runs.
    let later = producer
        .enqueue_with(
            &charge(11, "ok"),
            EnqueueOptions::new().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(first("ok", 11).await.duplicate);

    // Completed and dead: the key is free once the job is.
    let done = first("ok", 12).await;
    let dead = first("fail", 13).await;
    let running = common::RunningWorker::start(worker(&storage, &events, Duration::from_secs(5)));
    rx.event(again.id.as_str(), |k| *k == EventKind::Succeeded).await;
    rx.event(done.id.as_str(), |k| *k == EventKind::Succeeded).await;
    rx.event(dead.id.as_str(), |k| matches!(k, EventKind::Dead { .. }))
        .await;
    running.stop().await; // every outcome written
    assert!(!first("ok", 12).await.duplicate, "completed: free");
    assert!(!first("ok", 13).await.duplicate, "dead: free");
    assert!(first("ok", 11).await.duplicate, "the delayed one still holds");
    assert!(
        inspector
            .find_job(later.id.as_str(), None)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_given_back_by_its_stopped_worker_keeps_its_lock_until_it_completes_elsewhere() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let held = producer
        .enqueue_with(&charge(20, "wait"), EnqueueOptions::new())
        .await
        .unwrap();
    let first = common::RunningWorker::start(worker(&storage, &events, Duration::from_millis(50)));
    rx.event(held.id.as_str(), |k| *k == EventKind::Started).await;
    assert!(
        producer
            .enqueue_with(&charge(20, "ok"), EnqueueOptions::new())
            .await
            .unwrap()
            .duplicate,
        "running: held"
    );
    // Its worker stops before it finishes: the job goes back to its queue, as another entry.
    assert_eq!(first.stop().await.released, 1);
    let again = producer
        .enqueue_with(&charge(20, "ok"), EnqueueOptions::new())
        .await
        .unwrap();
    assert!(
        again.duplicate && again.id == held.id,
        "it still holds: {again:?}"
    );
    // It runs elsewhere and ends (cancelled here, to end it); then the key is free.
    let second = common::RunningWorker::start(worker(&storage, &events, Duration::from_secs(5)));
    rx.event(held.id.as_str(), |k| *k == EventKind::Started).await;
    inspector.cancel(held.id.as_str(), None).await.unwrap();
    rx.event(held.id.as_str(), |k| *k == EventKind::Cancelled).await;
    second.stop().await;
    assert!(
        !producer
            .enqueue_with(&charge(20, "ok"), EnqueueOptions::new())
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_holds_only_in_the_states_it_names() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let only_queued = || EnqueueOptions::new().unique(Unique::new("report").while_running(false));
    let held = producer
        .enqueue_with(&charge(30, "wait"), only_queued())
        .await
        .unwrap();
    assert!(
        producer
            .enqueue_with(&charge(30, "ok"), only_queued())
            .await
            .unwrap()
            .duplicate
    );
    let running = common::RunningWorker::start(worker(&storage, &events, Duration::from_millis(50)));
    rx.event(held.id.as_str(), |k| *k == EventKind::Started).await;
    let next = producer
        .enqueue_with(&charge(30, "ok"), only_queued())
        .await
        .unwrap();
    assert!(
        !next.duplicate,
        "a running holder does not hold a rule that is only for queued jobs"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueues_keep_one_job_per_key_within_the_batch_and_against_redis() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let before = producer
        .enqueue_with(&charge(40, "ok"), EnqueueOptions::new())
        .await
        .unwrap();
    let batch = [
        charge(40, "ok"),
        charge(41, "ok"),
        charge(41, "ok"),
        charge(42, "ok"),
    ];
    let ids = producer.enqueue_many(&batch).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], before.id, "held by the job enqueued before");
    assert_eq!(ids[1], ids[2], "a duplicate within the batch names the first");
    assert_ne!(ids[1], ids[3]);
    assert_eq!(storage.stats(&storage.keys("uq")).await.unwrap().pending, 3);
    let err = producer
        .enqueue_many_with(&batch, &EnqueueOptions::new().unique(Unique::new("one")))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Options(_)), "{err}");
}
