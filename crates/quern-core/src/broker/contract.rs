//! The contract every [`Broker`] passes: the same suite runs against Redis and against the
//! in-memory broker, so the worker can rely on one behaviour.
//!
//! Call [`run_all`] from a test of the implementation, with a broker and a prefix that makes
//! this run's queue names unique:
//!
//! ```ignore
//! #[tokio::test]
//! async fn redis_passes_the_broker_contract() {
//!     let storage = Storage::connect(RedisConfig::from_env().prefix("contract-1234")).await?;
//!     quern_core::broker::contract::run_all(&storage, "c").await;
//! }
//! ```
//!
//! Each case panics with its name and what differed. Waits are bounded (a few seconds at most).

use std::time::{Duration, Instant};

use super::{Broker, Delivery, Settle, SettleOptions};
use crate::clock::Clock;

const CONSUMER: &str = "contract-a";
const OTHER: &str = "contract-b";
const SHORT: Duration = Duration::from_millis(20);

/// Runs every case, each on a queue of its own named `<prefix>-<case>`.
pub async fn run_all<B: Broker>(broker: &B, prefix: &str) {
    macro_rules! case {
        ($name:ident) => {
            let queue = format!("{prefix}-{}", stringify!($name));
            let q = broker.queue(&queue).expect("a valid queue name");
            broker.prepare(&q).await.expect("prepare");
            $name(broker, &q).await;
        };
    }
    case!(pushed_jobs_are_claimed_once_in_order);
    case!(an_idle_claim_wakes_when_a_job_arrives);
    case!(claims_take_at_most_count);
    case!(completed_jobs_are_gone);
    case!(finished_jobs_are_gone_and_settle_once);
    case!(settling_twice_changes_nothing);
    case!(a_retry_waits_until_due_then_runs_again);
    case!(a_snooze_waits_until_due);
    case!(dead_jobs_are_not_delivered_again);
    case!(renewing_keeps_only_leases_still_held);
    case!(expired_leases_are_requeued_and_counted);
    case!(a_settle_after_the_lease_was_lost_changes_nothing);
    case!(released_jobs_go_to_another_worker_unchanged);
    case!(scheduled_jobs_are_promoted_when_due);
    case!(a_schedule_wakes_a_waiter);
    case!(trimming_never_removes_a_waiting_or_leased_job);
    case!(prepare_is_idempotent);
}

fn env(n: usize) -> String {
    format!(r#"{{"id":"contract-{n}","job":"contract","payload":{{"n":{n}}}}}"#)
}

fn text(d: &Delivery) -> &str {
    std::str::from_utf8(&d.envelope).expect("UTF-8 envelope")
}

async fn claim<B: Broker>(
    b: &B,
    q: &B::Queue,
    consumer: &str,
    count: usize,
    block: Duration,
) -> Vec<Delivery> {
    let mut c = b.claimer(block).await.expect("claimer");
    b.claim(&mut c, q, consumer, count, block).await.expect("claim")
}

fn opts() -> SettleOptions {
    SettleOptions::default()
}

async fn pushed_jobs_are_claimed_once_in_order<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1), env(2), env(3)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let texts: Vec<&str> = got.iter().map(text).collect();
    assert_eq!(
        texts,
        [env(1), env(2), env(3)],
        "claimed in push order, byte for byte"
    );
    assert!(
        got.iter()
            .all(|d| d.lease_expiries == 0 && !d.entry_id.is_empty())
    );
    assert!(
        claim(b, q, OTHER, 10, SHORT).await.is_empty(),
        "a leased job is not claimed again"
    );
}

async fn an_idle_claim_wakes_when_a_job_arrives<B: Broker>(b: &B, q: &B::Queue) {
    let mut c = b.claimer(Duration::from_secs(5)).await.expect("claimer");
    let pusher = b.clone();
    let pq = q.clone();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pusher.push(&pq, &[env(7)]).await.expect("push");
    });
    let started = Instant::now();
    let got = b
        .claim(&mut c, q, CONSUMER, 10, Duration::from_secs(5))
        .await
        .expect("claim");
    push.await.expect("pusher");
    assert_eq!(got.len(), 1, "woken by the push");
    assert!(started.elapsed() < Duration::from_secs(4), "woken, not timed out");
}

async fn claims_take_at_most_count<B: Broker>(b: &B, q: &B::Queue) {
    let envs: Vec<String> = (0..5).map(env).collect();
    b.push(q, &envs).await.expect("push");
    assert_eq!(claim(b, q, CONSUMER, 2, SHORT).await.len(), 2);
    assert_eq!(claim(b, q, CONSUMER, 10, SHORT).await.len(), 3);
}

async fn completed_jobs_are_gone<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1), env(2)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let ops: Vec<Settle> = got.iter().map(|d| Settle::complete(d.entry_id.clone())).collect();
    b.settle(q, &ops, opts()).await.expect("settle");
    assert_eq!(b.requeue_expired(q, Duration::ZERO).await.expect("requeue"), 0);
    assert_eq!(b.release(q, CONSUMER).await.expect("release"), 0);
    let ids: Vec<String> = got.iter().map(|d| d.entry_id.clone()).collect();
    assert!(b.renew(q, CONSUMER, &ids).await.expect("renew").is_empty());
    assert!(claim(b, q, OTHER, 10, SHORT).await.is_empty());
    b.trim(q).await.expect("trim");
}

async fn finished_jobs_are_gone_and_settle_once<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1), env(2)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let finish = |d: &Delivery, n: usize, cancelled: bool| Settle::Finish {
        entry_id: d.entry_id.clone(),
        job_id: format!("contract-{n}"),
        cancelled,
        record: format!(r#"{{"id":"contract-{n}"}}"#),
        keep_ms: 60_000,
    };
    let ops = [finish(&got[0], 1, false), finish(&got[1], 2, true)];
    b.settle(q, &ops, opts()).await.expect("settle");
    b.settle(q, &ops, opts())
        .await
        .expect("settle again: a replay changes nothing");
    assert_eq!(b.requeue_expired(q, Duration::ZERO).await.expect("requeue"), 0);
    assert_eq!(b.release(q, CONSUMER).await.expect("release"), 0);
    assert!(claim(b, q, OTHER, 10, SHORT).await.is_empty());
    b.trim(q).await.expect("trim");
}

async fn settling_twice_changes_nothing<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1), env(2)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let done = Settle::complete(got[0].entry_id.clone());
    let retry = Settle::Retry {
        entry_id: got[1].entry_id.clone(),
        job_id: "contract-2".into(),
        due_ms: 1,
        envelope: env(20),
    };
    b.settle(q, &[done.clone(), retry.clone()], opts())
        .await
        .expect("settle");
    b.settle(q, &[done, retry], opts()).await.expect("settle again");
    let promoted = b.promote_due(q, Clock::system().now_ms()).await.expect("promote");
    assert_eq!(promoted.moved, 1, "the retry was scheduled once, not twice");
    let again = claim(b, q, CONSUMER, 10, SHORT).await;
    assert_eq!(again.iter().map(text).collect::<Vec<_>>(), [env(20)]);
}

async fn a_retry_waits_until_due_then_runs_again<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let now = Clock::system().now_ms();
    let due = now + 60_000;
    let op = Settle::Retry {
        entry_id: got[0].entry_id.clone(),
        job_id: "contract-1".into(),
        due_ms: due,
        envelope: env(2),
    };
    b.settle(q, &[op], opts()).await.expect("settle");
    let early = b.promote_due(q, now).await.expect("promote");
    assert_eq!(early.moved, 0, "not due yet");
    assert_eq!(early.next_due_ms, Some(due), "the next due time is known");
    assert!(claim(b, q, CONSUMER, 10, SHORT).await.is_empty());
    assert_eq!(b.promote_due(q, due).await.expect("promote").moved, 1);
    let again = claim(b, q, OTHER, 10, SHORT).await;
    assert_eq!(
        again.iter().map(text).collect::<Vec<_>>(),
        [env(2)],
        "the next attempt's envelope"
    );
}

async fn a_snooze_waits_until_due<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let due = Clock::system().now_ms() + 60_000;
    let op = Settle::Snooze {
        entry_id: got[0].entry_id.clone(),
        job_id: "contract-1".into(),
        due_ms: due,
        envelope: env(1),
    };
    b.settle(q, &[op], opts()).await.expect("settle");
    assert_eq!(b.promote_due(q, due - 1).await.expect("promote").moved, 0);
    assert_eq!(b.promote_due(q, due).await.expect("promote").moved, 1);
    assert_eq!(claim(b, q, CONSUMER, 10, SHORT).await.len(), 1);
}

async fn dead_jobs_are_not_delivered_again<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let op = Settle::Dead {
        entry_id: got[0].entry_id.clone(),
        job_id: "contract-1".into(),
        record: r#"{"id":"contract-1"}"#.into(),
    };
    b.settle(q, &[op], opts()).await.expect("settle");
    assert_eq!(b.requeue_expired(q, Duration::ZERO).await.expect("requeue"), 0);
    assert_eq!(b.promote_due(q, u64::MAX / 2).await.expect("promote").moved, 0);
    assert!(claim(b, q, OTHER, 10, SHORT).await.is_empty());
}

async fn renewing_keeps_only_leases_still_held<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1), env(2)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    let mut ids: Vec<String> = got.iter().map(|d| d.entry_id.clone()).collect();
    let mut kept = b.renew(q, CONSUMER, &ids).await.expect("renew");
    kept.sort();
    ids.sort();
    assert_eq!(kept, ids);
    assert!(b.renew(q, CONSUMER, &[]).await.expect("renew nothing").is_empty());
    b.settle(q, &[Settle::complete(ids[0].clone())], opts())
        .await
        .expect("settle");
    assert_eq!(b.renew(q, CONSUMER, &ids).await.expect("renew"), [ids[1].clone()]);
}

async fn expired_leases_are_requeued_and_counted<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    assert_eq!(
        b.requeue_expired(q, Duration::from_secs(3600))
            .await
            .expect("requeue"),
        0,
        "not expired"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        b.requeue_expired(q, Duration::from_millis(1))
            .await
            .expect("requeue"),
        1
    );
    let again = claim(b, q, OTHER, 10, SHORT).await;
    assert_eq!(again.len(), 1);
    assert_eq!(text(&again[0]), text(&got[0]), "the same envelope");
    assert_eq!(again[0].lease_expiries, 1, "the expiry is counted");
    assert!(
        b.renew(q, CONSUMER, &[got[0].entry_id.clone()])
            .await
            .expect("renew")
            .is_empty(),
        "the first worker's lease is gone"
    );
}

async fn a_settle_after_the_lease_was_lost_changes_nothing<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1)]).await.expect("push");
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        b.requeue_expired(q, Duration::from_millis(1))
            .await
            .expect("requeue"),
        1
    );
    let stale = [
        Settle::complete(got[0].entry_id.clone()),
        Settle::Retry {
            entry_id: got[0].entry_id.clone(),
            job_id: "contract-1".into(),
            due_ms: 1,
            envelope: env(99),
        },
        Settle::Dead {
            entry_id: got[0].entry_id.clone(),
            job_id: "contract-1".into(),
            record: "{}".into(),
        },
    ];
    b.settle(q, &stale, opts())
        .await
        .expect("stale settles are not errors");
    assert_eq!(
        b.promote_due(q, u64::MAX / 2).await.expect("promote").moved,
        0,
        "no retry was written"
    );
    let again = claim(b, q, OTHER, 10, SHORT).await;
    assert_eq!(
        again.iter().map(text).collect::<Vec<_>>(),
        [env(1)],
        "the requeued copy is intact"
    );
}

async fn released_jobs_go_to_another_worker_unchanged<B: Broker>(b: &B, q: &B::Queue) {
    b.push(q, &[env(1), env(2)]).await.expect("push");
    assert_eq!(claim(b, q, CONSUMER, 10, SHORT).await.len(), 2);
    assert_eq!(b.release(q, CONSUMER).await.expect("release"), 2);
    b.remove_consumer(q, CONSUMER).await.expect("remove consumer");
    let again = claim(b, q, OTHER, 10, SHORT).await;
    let mut texts: Vec<&str> = again.iter().map(text).collect();
    texts.sort_unstable();
    assert_eq!(texts, [env(1), env(2)]);
    assert!(
        again.iter().all(|d| d.lease_expiries == 0),
        "a release is not an expiry"
    );
}

async fn scheduled_jobs_are_promoted_when_due<B: Broker>(b: &B, q: &B::Queue) {
    let now = Clock::system().now_ms();
    b.schedule(q, &[(now + 10_000, env(2)), (now + 5_000, env(1))])
        .await
        .expect("schedule");
    let p = b.promote_due(q, now).await.expect("promote");
    assert_eq!((p.moved, p.next_due_ms), (0, Some(now + 5_000)));
    let p = b.promote_due(q, now + 5_000).await.expect("promote");
    assert_eq!((p.moved, p.next_due_ms), (1, Some(now + 10_000)));
    let p = b.promote_due(q, now + 20_000).await.expect("promote");
    assert_eq!((p.moved, p.next_due_ms), (1, None));
    let got = claim(b, q, CONSUMER, 10, SHORT).await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        [env(1), env(2)],
        "in due order"
    );
}

async fn a_schedule_wakes_a_waiter<B: Broker>(b: &B, q: &B::Queue) {
    let mut w = b.waiter(Duration::from_secs(5)).await.expect("waiter");
    assert!(
        !b.wait_for_wake(&mut w, q, SHORT).await.expect("wait"),
        "nothing scheduled yet"
    );
    let scheduler = b.clone();
    let sq = q.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let due = Clock::system().now_ms() + 60_000;
        scheduler.schedule(&sq, &[(due, env(1))]).await.expect("schedule");
    });
    let started = Instant::now();
    let woken = b
        .wait_for_wake(&mut w, q, Duration::from_secs(5))
        .await
        .expect("wait");
    task.await.expect("scheduler");
    assert!(
        woken && started.elapsed() < Duration::from_secs(4),
        "woken by the schedule"
    );
}

async fn trimming_never_removes_a_waiting_or_leased_job<B: Broker>(b: &B, q: &B::Queue) {
    let envs: Vec<String> = (0..6).map(env).collect();
    b.push(q, &envs[..4]).await.expect("push");
    let got = claim(b, q, CONSUMER, 3, SHORT).await;
    // Complete the first and the third; the second stays leased; the fourth waits.
    let ops = [
        Settle::complete(got[0].entry_id.clone()),
        Settle::complete(got[2].entry_id.clone()),
    ];
    b.settle(q, &ops, opts()).await.expect("settle");
    b.push(q, &envs[4..]).await.expect("push");
    b.trim(q).await.expect("trim");
    assert_eq!(
        b.renew(q, CONSUMER, &[got[1].entry_id.clone()])
            .await
            .expect("renew"),
        [got[1].entry_id.clone()],
        "the leased job survives trimming"
    );
    let rest = claim(b, q, OTHER, 10, SHORT).await;
    assert_eq!(
        rest.iter().map(text).collect::<Vec<_>>(),
        [env(3), env(4), env(5)]
    );
}

async fn prepare_is_idempotent<B: Broker>(b: &B, q: &B::Queue) {
    b.prepare(q).await.expect("prepare again");
    b.push(q, &[env(1)]).await.expect("push");
    b.prepare(q).await.expect("prepare after a push");
    assert_eq!(
        claim(b, q, CONSUMER, 10, SHORT).await.len(),
        1,
        "preparing loses nothing"
    );
    assert!(
        B::queue_name(q).ends_with("prepare_is_idempotent"),
        "the queue keeps its name"
    );
}
