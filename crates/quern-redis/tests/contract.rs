//! Redis passes the broker contract every broker passes, and its settles are idempotent and
//! classified: a replayed completion counts once, a refused one is not retryable.

mod common;

use common::{cleanup, conn, storage};
use quern_core::{Broker, BrokerError, Settle, SettleOptions};

#[tokio::test]
async fn redis_passes_the_broker_contract() {
    let storage = storage("contract").await;
    quern_core::broker::contract::run_all(&storage, "c").await;
    cleanup(&storage).await;
}

#[tokio::test]
async fn a_replayed_completion_counts_once_and_a_refused_settle_is_not_retryable() {
    let storage = storage("settle").await;
    let q = storage.queue("replay").unwrap();
    storage.prepare(&q).await.unwrap();
    let envs: Vec<String> = (0..3)
        .map(|n| format!(r#"{{"job":"x","payload":{{"n":{n}}}}}"#))
        .collect();
    storage.push(&q, &envs).await.unwrap();
    let mut reader = storage
        .claimer(std::time::Duration::from_millis(20))
        .await
        .unwrap();
    let got = storage
        .claim(&mut reader, &q, "c1", 10, std::time::Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    let batch: Vec<Settle> = got[..2]
        .iter()
        .map(|d| Settle::complete(d.entry_id.clone()))
        .collect();
    // The same batch three times, as a settler whose replies were lost to timeouts sends it.
    for _ in 0..3 {
        Broker::settle(&storage, &q, &batch, SettleOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(storage.stats(&q).await.unwrap().completed, 2, "counted once");

    // The stats hash replaced by a string: the settle script fails with WRONGTYPE, which no
    // retry can fix.
    let mut conn = conn(&storage).await;
    let _: () = redis::cmd("SET")
        .arg(&q.stats)
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = Broker::settle(
        &storage,
        &q,
        &[Settle::complete(got[2].entry_id.clone())],
        SettleOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(!BrokerError::is_retryable(&err), "{err:?}");
    assert!(!err.needs_prepare(), "{err:?}");
    assert_eq!(err.code(), Some("WRONGTYPE"), "{err:?}");
    cleanup(&storage).await;
}
