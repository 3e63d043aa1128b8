//! The typed admin API: counts, dead jobs listed, shown, retried (one, all), deleted, purged.

mod common;

use common::{Note, SHORT, cleanup, complete, index_len, storage};
use quern_core::{Broker, DeadReason, DeadRecord, JobState, Settle, SettleOptions};
use quern_redis::{Inspector, Producer, RetriedDead, RetryDead, Storage, StoredRecord};

/// Enqueues one job per stored text, claims them and dead-letters each with a record keeping
/// that text (`None`: a record that is not JSON at all). Returns their ids.
async fn seed_dead(storage: &Storage, queue: &str, stored: &[Option<&[u8]>]) -> Vec<String> {
    let q = storage.queue(queue).unwrap();
    storage.prepare(&q).await.unwrap();
    let envs: Vec<String> = (0..stored.len())
        .map(|n| format!(r#"{{"job":"note","payload":{{"n":{n}}}}}"#))
        .collect();
    let entries = storage.push(&q, &envs).await.unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 100, SHORT).await.unwrap();
    assert_eq!(got.len(), stored.len());
    let mut ids = Vec::new();
    let ops: Vec<Settle> = got
        .iter()
        .zip(stored)
        .enumerate()
        .map(|(i, (d, s))| {
            let id = format!("{queue}/{}", entries[i]);
            ids.push(id.clone());
            let record = match s {
                Some(bytes) => DeadRecord::new(
                    id.clone(),
                    queue,
                    DeadReason::Permanent,
                    "no".into(),
                    bytes,
                    1 + i as u64,
                )
                .encode(),
                None => "not a record".to_owned(),
            };
            Settle::Dead {
                entry_id: d.entry_id.clone(),
                job_id: id,
                record,
            }
        })
        .collect();
    Broker::settle(storage, &q, &ops, SettleOptions::default())
        .await
        .unwrap();
    ids
}

#[tokio::test]
async fn dead_jobs_are_listed_shown_retried_deleted_and_purged() {
    let storage = storage("inspect").await;
    let inspector = Inspector::new(storage.clone());
    let good: &[u8] = br#"{"job":"note","attempt":4,"payload":{"n":0}}"#;
    let ids = seed_dead(
        &storage,
        "mail",
        &[
            Some(good),
            Some(b"\xff\xfenot text"),
            Some(b"{\"x\":1}"),
            None,
            Some(good),
        ],
    )
    .await;
    assert_eq!(inspector.queues().await.unwrap(), ["mail"]);
    let stats = inspector.stats("mail").await.unwrap();
    assert_eq!((stats.dead, stats.failed, stats.pending), (5, 5, 0));

    // Newest first, parsed where they parse, the text itself where not.
    let listed = inspector.dead_jobs("mail", 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).rev().collect::<Vec<_>>(),
        ids
    );
    assert!(matches!(&listed[1].record, StoredRecord::Unparsed(text) if text == "not a record"));
    let shown = inspector.dead_job(&ids[0], None).await.unwrap().expect("dead");
    assert_eq!(
        (shown.queue.as_str(), shown.parsed().unwrap().reason),
        ("mail", DeadReason::Permanent)
    );
    assert_eq!(inspector.dead_jobs("mail", 2).await.unwrap().len(), 2);

    // One retried: back at attempt 1; again: no longer dead; those that cannot run say why.
    assert_eq!(
        inspector.retry_dead(&ids[0], None).await.unwrap(),
        RetryDead::Queued { queue: "mail".into() }
    );
    assert_eq!(
        inspector.retry_dead(&ids[0], Some("mail")).await.unwrap(),
        RetryDead::NotDead
    );
    for (i, why) in [
        (1, "UTF-8"),
        (2, "not a Quern envelope"),
        (3, "not one Quern wrote"),
    ] {
        match inspector.retry_dead(&ids[i], None).await.unwrap() {
            RetryDead::NotRetryable { why: got } => assert!(got.contains(why), "{got}"),
            other => panic!("{other:?}"),
        }
    }
    let info = inspector.find_job(&ids[0], None).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Pending);

    // All: the retryable one goes, the three others stay, refused.
    let all: RetriedDead = inspector.retry_all_dead("mail").await.unwrap();
    assert_eq!((all.revived, all.refused), (1, 3));
    let stats = inspector.stats("mail").await.unwrap();
    assert_eq!((stats.dead, stats.pending), (3, 2));

    // The revived jobs run and complete: nothing left in the index.
    let q = storage.queue("mail").unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 10, SHORT).await.unwrap();
    let env = quern_core::envelope::decode_envelope(&got[1].envelope).unwrap();
    assert_eq!((env.id.as_str(), env.attempt), (ids[4].as_str(), 1));
    let done: Vec<Settle> = got.iter().map(|d| complete("mail", d)).collect();
    Broker::settle(&storage, &q, &done, SettleOptions::default())
        .await
        .unwrap();
    assert_eq!(index_len(&storage, "mail").await, 0);

    assert!(inspector.delete_dead(&ids[1], None).await.unwrap());
    assert!(!inspector.delete_dead(&ids[1], None).await.unwrap());
    assert_eq!(inspector.purge_dead(Some("mail")).await.unwrap(), 2);
    assert_eq!(inspector.stats("mail").await.unwrap().dead, 0);
    assert!(
        inspector.stats("bad queue").await.is_err(),
        "a name that cannot be a queue"
    );
    cleanup(&storage).await;
}

#[tokio::test]
async fn the_producer_names_jobs_by_entry_and_delays_them_by_id() {
    let storage = storage("produce").await;
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Note> = (0..2500).map(|n| Note { n }).collect();
    // Over the bulk connection, in chunks of 1,000: one id per job, in order, naming its entry.
    let ids = producer.enqueue_many(&jobs).await.unwrap();
    assert_eq!(ids.len(), 2500);
    let q = storage.queue("default").unwrap();
    storage.prepare(&q).await.unwrap();
    let mut reader = storage.claimer(SHORT).await.unwrap();
    let got = storage.claim(&mut reader, &q, "w1", 3000, SHORT).await.unwrap();
    assert_eq!(got.len(), 2500);
    for (id, d) in ids.iter().zip(&got) {
        assert_eq!(id.entry(), Some(("default", d.entry_id.as_str())));
    }
    assert!(
        !String::from_utf8_lossy(&got[0].envelope).contains("\"id\""),
        "no id on the plain path"
    );
    // Through the shared connection when the bulk one is busy: still one id per job.
    let (a, b) = tokio::join!(
        producer.enqueue_many(&jobs[..3]),
        producer.enqueue_many(&jobs[..3])
    );
    assert_eq!((a.unwrap().len(), b.unwrap().len()), (3, 3));
    // JSON, now and later.
    let now = producer
        .enqueue_json("default", "note", r#"{"n":1}"#, None)
        .await
        .unwrap();
    assert!(now.entry().is_some(), "{now}");
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(600);
    let later = producer
        .enqueue_json("default", "note", r#"{"n":2}"#, Some(at))
        .await
        .unwrap();
    assert!(
        later.entry().is_none(),
        "a delayed job has an id of its own: {later}"
    );
    let inspector = Inspector::new(storage.clone());
    assert_eq!(
        inspector
            .find_job(later.as_str(), None)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Scheduled
    );
    cleanup(&storage).await;
}
