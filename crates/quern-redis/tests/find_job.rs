//! Any job is found by its id, in every state, without a scan; the index holds only the jobs
//! not found from their id alone, and is empty again once they complete or die.

mod common;

use std::time::Duration;

use common::{Note, SHORT, cleanup, complete, index_len, job_id, storage};
use quern_core::{Broker, DeadReason, DeadRecord, JobState, ManualClock, Settle, SettleOptions};
use quern_redis::{Inspector, Producer};

const Q: &str = "default";

#[tokio::test]
async fn every_state_is_found_by_id() {
    // The real time, held still: due times are exact and promotion is told when "now" is.
    let clock = ManualClock::starting_now();
    let storage = storage("find").await.with_clock(clock.clock());
    let inspector = Inspector::new(storage.clone());
    let producer = Producer::new(storage.clone());
    let q = storage.queue(Q).unwrap();
    storage.prepare(&q).await.unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();
    let find = |id: String| {
        let inspector = inspector.clone();
        async move { inspector.find_job(&id, None).await.unwrap() }
    };

    // Pending: the id names its entry, and the envelope carries none.
    let pending = producer.enqueue(&Note { n: 1 }).await.unwrap();
    assert!(pending.as_str().starts_with("default/"), "{pending}");
    let info = find(pending.to_string()).await.expect("pending job");
    assert_eq!((info.state, info.queue.as_str()), (JobState::Pending, Q));
    assert_eq!(
        info.envelope.as_deref(),
        Some(r#"{"job":"note","payload":{"n":1}}"#)
    );
    assert_eq!(
        index_len(&storage, Q).await,
        0,
        "a plain job needs no index entry"
    );

    // Running, with its worker.
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    assert_eq!(got.len(), 1);
    let info = find(pending.to_string()).await.unwrap();
    assert_eq!(info.state, JobState::Running);
    let lease = info.lease.expect("a lease");
    assert_eq!((lease.worker.as_str(), lease.deliveries), ("w1", 1));

    // Completed and not yet trimmed.
    Broker::settle(&storage, &q, &[complete(Q, &got[0])], SettleOptions::default())
        .await
        .unwrap();
    assert_eq!(
        find(pending.to_string()).await.unwrap().state,
        JobState::Completed
    );
    storage.trim_acked(&q).await.unwrap();
    assert_eq!(find(pending.to_string()).await, None, "trimmed: gone");

    // Scheduled, with its due time.
    let now = clock.now_ms();
    let later = producer
        .enqueue_in(&Note { n: 2 }, Duration::from_secs(60))
        .await
        .unwrap();
    let info = find(later.to_string()).await.expect("scheduled job");
    assert_eq!(
        (info.state, info.due_ms),
        (JobState::Scheduled, Some(now + 60_000))
    );
    assert!(info.envelope.unwrap().contains(later.as_str()));

    // Retrying: a plain job fails; its next attempt keeps the id it had.
    let failing = producer.enqueue(&Note { n: 3 }).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    assert_eq!(job_id(Q, &got[0]).0, failing.as_str());
    let retry_due = now + 5_000;
    let retry = Settle::Retry {
        entry_id: got[0].entry_id.clone(),
        job_id: failing.to_string(),
        due_ms: retry_due,
        envelope: r#"{"job":"note","attempt":2,"payload":{"n":3}}"#.into(),
    };
    Broker::settle(&storage, &q, &[retry], SettleOptions::default())
        .await
        .unwrap();
    let info = find(failing.to_string()).await.expect("retrying job");
    assert_eq!((info.state, info.due_ms), (JobState::Retrying, Some(retry_due)));
    // Promoted: at a new entry, still found by its first id, carried in the envelope.
    assert_eq!(storage.promote_due(&q, retry_due).await.unwrap().moved, 1);
    let info = find(failing.to_string()).await.expect("promoted retry");
    assert_eq!(info.state, JobState::Pending);
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    assert_eq!(job_id(Q, &got[0]), (failing.to_string(), true));
    assert_eq!(find(failing.to_string()).await.unwrap().state, JobState::Running);
    Broker::settle(&storage, &q, &[complete(Q, &got[0])], SettleOptions::default())
        .await
        .unwrap();

    // Dead: found in the dead records, with its record.
    let doomed = producer.enqueue(&Note { n: 4 }).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    let record = DeadRecord::new(
        doomed.to_string(),
        Q,
        DeadReason::Permanent,
        "permanent failure: no".into(),
        &got[0].envelope,
        now,
    );
    let dead = Settle::Dead {
        entry_id: got[0].entry_id.clone(),
        job_id: doomed.to_string(),
        record: record.encode(),
    };
    Broker::settle(&storage, &q, &[dead], SettleOptions::default())
        .await
        .unwrap();
    let info = find(doomed.to_string()).await.expect("dead job");
    assert_eq!(info.state, JobState::Dead);
    assert_eq!(info.dead.as_ref(), Some(&record));

    // Requeued after its lease expired, and released at shutdown: found by the ORIGINAL id at
    // their new entries, which carry it.
    let lost = producer.enqueue(&Note { n: 5 }).await.unwrap();
    let given_back = producer.enqueue(&Note { n: 6 }).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 1, SHORT).await.unwrap();
    assert_eq!(job_id(Q, &got[0]).0, lost.as_str());
    let got = storage.claim(&mut reader, &q, "w2", 1, SHORT).await.unwrap();
    assert_eq!(job_id(Q, &got[0]).0, given_back.as_str());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(storage.release(&q, "w2").await.unwrap(), 1);
    assert_eq!(
        storage
            .requeue_expired(&q, Duration::from_millis(1))
            .await
            .unwrap(),
        1
    );
    for id in [&lost, &given_back] {
        let info = find(id.to_string()).await.expect("moved job");
        assert_eq!(info.state, JobState::Pending, "{id}");
    }
    let got = storage.claim(&mut reader, &q, "w3", 10, SHORT).await.unwrap();
    let mut moved: Vec<(String, u32)> = got
        .iter()
        .map(|d| {
            (
                d.job_id.clone().expect("the entry carries the id"),
                d.lease_expiries,
            )
        })
        .collect();
    moved.sort();
    let mut want = vec![(lost.to_string(), 1), (given_back.to_string(), 0)];
    want.sort();
    assert_eq!(moved, want);
    let info = find(lost.to_string()).await.unwrap();
    assert_eq!(
        (info.state, info.lease.unwrap().worker.as_str()),
        (JobState::Running, "w3")
    );

    // The index empties as they finish: the moved ones complete, the scheduled one runs and
    // completes.
    let done: Vec<Settle> = got.iter().map(|d| complete(Q, d)).collect();
    Broker::settle(&storage, &q, &done, SettleOptions::default())
        .await
        .unwrap();
    assert_eq!(storage.promote_due(&q, now + 60_000).await.unwrap().moved, 1);
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    assert_eq!(job_id(Q, &got[0]), (later.to_string(), true));
    Broker::settle(&storage, &q, &[complete(Q, &got[0])], SettleOptions::default())
        .await
        .unwrap();
    assert_eq!(index_len(&storage, Q).await, 0, "no index entry outlives its job");
    assert_eq!(find(later.to_string()).await.map(|i| i.state), None);
    assert_eq!(find("no-such-job".into()).await, None);
    cleanup(&storage).await;
}

#[tokio::test]
async fn a_revived_dead_job_keeps_its_id_and_a_snooze_is_found_as_retrying() {
    let storage = storage("revive").await;
    let inspector = Inspector::new(storage.clone());
    let producer = Producer::new(storage.clone());
    let q = storage.queue(Q).unwrap();
    storage.prepare(&q).await.unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();

    let id = producer.enqueue(&Note { n: 1 }).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    let envelope = r#"{"job":"note","attempt":3,"payload":{"n":1}}"#;
    let record = DeadRecord::new(
        id.to_string(),
        Q,
        DeadReason::MaxAttempts,
        "spent".into(),
        envelope.as_bytes(),
        1,
    );
    let dead = Settle::Dead {
        entry_id: got[0].entry_id.clone(),
        job_id: id.to_string(),
        record: record.encode(),
    };
    Broker::settle(&storage, &q, &[dead], SettleOptions::default())
        .await
        .unwrap();
    assert_eq!(
        inspector.retry_dead(id.as_str(), None).await.unwrap(),
        quern_redis::RetryDead::Queued { queue: Q.into() }
    );
    let info = inspector
        .find_job(id.as_str(), None)
        .await
        .unwrap()
        .expect("revived");
    assert_eq!(info.state, JobState::Pending);
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    let env = quern_core::envelope::decode_envelope(&got[0].envelope).unwrap();
    assert_eq!(
        (env.id.as_str(), env.attempt),
        (id.as_str(), 1),
        "attempt 1, the same id"
    );

    // A snooze waits in the retry set and is found there.
    let due = quern_core::Clock::system().now_ms() + 60_000;
    let snooze = Settle::Snooze {
        entry_id: got[0].entry_id.clone(),
        job_id: id.to_string(),
        due_ms: due,
        envelope: String::from_utf8(got[0].envelope.clone()).unwrap(),
    };
    Broker::settle(&storage, &q, &[snooze], SettleOptions::default())
        .await
        .unwrap();
    let info = inspector.find_job(id.as_str(), Some(Q)).await.unwrap().unwrap();
    assert_eq!((info.state, info.due_ms), (JobState::Retrying, Some(due)));
    assert_eq!(
        inspector.find_job(id.as_str(), Some("elsewhere")).await.unwrap(),
        None
    );
    cleanup(&storage).await;
}

#[tokio::test]
async fn ids_are_read_from_any_envelope_and_foreign_entries_are_moved_unindexed() {
    let storage = storage("ids").await;
    let inspector = Inspector::new(storage.clone());
    let q = storage.queue(Q).unwrap();
    storage.prepare(&q).await.unwrap();
    let due = quern_core::Clock::system().now_ms() + 60_000;
    let delayed = [
        r#"{"job":"a","id":"not-first","payload":{}}"#,
        r#"{"job":"a","payload":{"id":5}}"#,
        r#"{"id": "spaced", "job":"a","payload":{}}"#,
        r#"{"id":"broken"#,
    ];
    let jobs: Vec<(u64, String)> = delayed.iter().map(|e| (due, e.to_string())).collect();
    storage.schedule(&q, &jobs).await.unwrap();
    for id in ["not-first", "spaced"] {
        let info = inspector.find_job(id, None).await.unwrap().expect(id);
        assert_eq!(
            (info.state, info.due_ms),
            (JobState::Scheduled, Some(due)),
            "{id}"
        );
    }
    assert_eq!(
        index_len(&storage, Q).await,
        2,
        "only envelopes with an id are indexed"
    );

    // Promoted, claimed, lost: each moves with the id it has; the foreign entry keeps its fields.
    assert_eq!(storage.promote_due(&q, due).await.unwrap().moved, 4);
    let mut conn = common::conn(&storage).await;
    let _: String = redis::cmd("XADD")
        .arg(&q.stream)
        .arg("*")
        .arg("name")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(storage.release(&q, "w1").await.unwrap(), 5);
    let got = storage.claim(&mut reader, &q, "w2", 10, SHORT).await.unwrap();
    // Equal due times are promoted in member order: look each up by its envelope.
    let carried = |envelope: &str| {
        let d = got
            .iter()
            .find(|d| d.envelope == envelope.as_bytes())
            .expect(envelope);
        d.job_id.clone()
    };
    assert_eq!(carried(delayed[0]).as_deref(), Some("not-first"));
    let plain = carried(delayed[1]).expect("an id for the job without one");
    assert!(plain.starts_with("default/"), "{plain}");
    assert_eq!(carried(delayed[2]).as_deref(), Some("spaced"));
    assert!(
        carried(delayed[3]).is_some_and(|id| id.starts_with("default/")),
        "broken"
    );
    let foreign = got
        .iter()
        .find(|d| d.foreign_fields.is_some())
        .expect("the foreign entry");
    assert_eq!(foreign.job_id, None, "a foreign entry gets no id");
    assert_eq!(foreign.foreign_fields.as_deref(), Some(r#"{"name":"x"}"#));
    let info = inspector.find_job(&plain, None).await.unwrap().unwrap();
    assert_eq!(
        (info.state, info.envelope.as_deref()),
        (JobState::Running, Some(delayed[1]))
    );
    let done: Vec<Settle> = got.iter().map(|d| complete(Q, d)).collect();
    Broker::settle(&storage, &q, &done, SettleOptions::default())
        .await
        .unwrap();
    assert_eq!(index_len(&storage, Q).await, 0);
    cleanup(&storage).await;
}
