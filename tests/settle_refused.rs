//! A settle that Redis refuses with an error retrying cannot fix (a key of the wrong type) is
//! decided per job by the lifecycle model: a refused retry is dead-lettered instead, and the
//! queue's other jobs settle as usual; nothing blocks, nothing is lost.
mod common;

use std::time::Duration;

use quern::{Backoff, DeadReason, Job, JobContext, JobError, JobOptions, Producer, Registry, Worker};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Task {
    fail: bool,
}

impl Job for Task {
    const NAME: &'static str = "refused_task";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("refused")
            .max_attempts(3)
            .backoff(Backoff::Fixed(Duration::from_millis(10)))
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        if self.fail {
            return Err(JobError::msg("fails, so it must be retried"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_retry_is_dead_lettered_and_the_queue_goes_on() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("refused");
    // The retry set is a string: every retry script fails with WRONGTYPE.
    let mut conn = redis::Client::open(test_support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&keys.retry)
        .arg("not a sorted set")
        .query_async(&mut conn)
        .await
        .unwrap();

    let producer = Producer::new(storage.clone());
    let bad = producer.enqueue(&Task { fail: true }).await.unwrap();
    let good: Vec<_> = producer
        .enqueue_many(&(0..50).map(|_| Task { fail: false }).collect::<Vec<_>>())
        .await
        .unwrap();
    let events = quern::Events::new(1024);
    let mut rx = events.subscribe();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Task>()).events(events);
    let running = common::RunningWorker::start(worker);
    // The worker decided: 50 successes and one retry (which Redis will refuse).
    let decided = tokio::time::timeout(Duration::from_secs(20), async {
        let (mut ok, mut retried) = (0, 0);
        while ok < 50 || retried < 1 {
            match rx.recv().await.expect("no event lost").kind {
                quern::EventKind::Succeeded => ok += 1,
                quern::EventKind::Retried { .. } => retried += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(decided.is_ok(), "the worker decided every job");
    // Its settles are written (the refused one dead-lettered instead) within a few seconds.
    let written = common::wait_until(Duration::from_secs(10), || async {
        let dead = quern::Inspector::new(storage.clone())
            .dead_job(bad.as_str(), Some("refused"))
            .await
            .unwrap();
        dead.is_some()
    })
    .await;
    let report = running.stop().await;
    assert!(written, "the refused retry was dead-lettered; report {report:?}");
    let _: () = redis::cmd("DEL")
        .arg(&keys.retry)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.completed, stats.dead), (50, 1), "{stats:?}");
    assert_eq!((stats.pending, stats.running), (0, 0), "nothing left behind");
    let record = common::dead_record(&storage, "refused", bad.as_str())
        .await
        .expect("the refused job is dead");
    assert_eq!(record.reason, DeadReason::SettleRefused);
    let last = record.failures.last().expect("the refusal is recorded");
    assert_eq!(last.kind, "settle");
    assert!(last.chain.iter().any(|m| m.contains("WRONGTYPE")), "{last:?}");
    assert!(
        record.message.contains("writing its next attempt failed"),
        "{}",
        record.message
    );
    assert_eq!(good.len(), 50);
    storage.delete_queue(&keys).await.unwrap();
}
