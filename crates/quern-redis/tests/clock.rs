//! The storage reads "now" from its clock: the producer's delays and dead-letter retention run
//! on a manual clock without sleeping; retries count failures and snoozes do not.

use std::time::Duration;

use quern_core::{Broker, DeadRetention, Job, ManualClock, Settle, SettleOptions};
use quern_redis::{Producer, RedisConfig, Storage};

#[derive(serde::Serialize, serde::Deserialize)]
struct Tick {
    n: u64,
}

impl Job for Tick {
    const NAME: &'static str = "tick";
    type Resources = ();
    async fn run(self, _: &quern_core::JobContext, _: &mut ()) -> Result<(), quern_core::JobError> {
        Ok(())
    }
}

const T: u64 = 1_900_000_000_000;
const SHORT: Duration = Duration::from_millis(20);

async fn storage(clock: &ManualClock) -> Storage {
    let prefix = test_support::unique_name("clock");
    Storage::connect(RedisConfig::new(test_support::redis_url()).prefix(prefix))
        .await
        .unwrap()
        .with_clock(clock.clock())
}

async fn cleanup(storage: &Storage, queue: &str) {
    storage.delete_queue(&storage.keys(queue)).await.unwrap();
}

#[tokio::test]
async fn a_delay_is_counted_from_the_storage_clock() {
    let clock = ManualClock::at(T);
    let storage = storage(&clock).await;
    let q = storage.queue("default").unwrap();
    Producer::new(storage.clone())
        .enqueue_in(&Tick { n: 1 }, Duration::from_secs(60))
        .await
        .unwrap();
    let p = storage.promote_due(&q, T + 59_999).await.unwrap();
    assert_eq!(
        (p.moved, p.next_due_ms),
        (0, Some(T + 60_000)),
        "due 60 s after the clock's now"
    );
    assert_eq!(storage.promote_due(&q, T + 60_000).await.unwrap().moved, 1);

    // A time at or before the clock's now runs now.
    Producer::new(storage.clone())
        .enqueue_at(&Tick { n: 2 }, clock.clock().now())
        .await
        .unwrap();
    assert_eq!(storage.stats(&q).await.unwrap().pending, 2);
    cleanup(&storage, "default").await;
}

#[tokio::test]
async fn dead_retention_ages_by_the_storage_clock_and_snoozes_are_not_failures() {
    let clock = ManualClock::at(T);
    let storage = storage(&clock).await;
    let q = storage.queue("retention").unwrap();
    storage.prepare(&q).await.unwrap();
    let envs: Vec<String> = (0..4)
        .map(|n| format!(r#"{{"id":"r{n}","job":"tick","payload":{{"n":{n}}}}}"#))
        .collect();
    storage.push(&q, &envs).await.unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();
    let got = storage.claim(&mut reader, &q, "c1", 10, SHORT).await.unwrap();
    assert_eq!(got.len(), 4);
    let retention = SettleOptions::new(DeadRetention::new(100, Duration::from_secs(24 * 3600)), false);
    let dead = |i: usize| Settle::Dead {
        entry_id: got[i].entry_id.clone(),
        job_id: format!("r{i}"),
        record: "{}".into(),
    };
    Broker::settle(&storage, &q, &[dead(0)], retention).await.unwrap();
    // Two days later by the clock: the first dead job is past retention when the next dies.
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    Broker::settle(&storage, &q, &[dead(1)], retention).await.unwrap();
    let stats = storage.stats(&q).await.unwrap();
    assert_eq!((stats.dead, stats.failed), (1, 2));

    let later = clock.now_ms() + 60_000;
    let snooze = Settle::Snooze {
        entry_id: got[2].entry_id.clone(),
        job_id: "r2".into(),
        due_ms: later,
        envelope: envs[2].clone(),
    };
    let retry = Settle::Retry {
        entry_id: got[3].entry_id.clone(),
        job_id: "r3".into(),
        due_ms: later,
        envelope: envs[3].clone(),
    };
    Broker::settle(&storage, &q, &[snooze], retention).await.unwrap();
    assert_eq!(
        storage.stats(&q).await.unwrap().failed,
        2,
        "a snooze is not a failure"
    );
    Broker::settle(&storage, &q, &[retry], retention).await.unwrap();
    let stats = storage.stats(&q).await.unwrap();
    assert_eq!((stats.failed, stats.retrying), (3, 2));
    cleanup(&storage, "retention").await;
}
