//! Helpers shared by `tests/isolated_pg*.rs`.
#![allow(dead_code)]

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use quern::Storage;

use super::common;

/// An admin connection on the current runtime, to create tables and read `pg_stat_activity`.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("admin connection to {}: {e}", quern::redact_url(url)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Waits (bounded) until every job of the queue is settled: completed + dead == `total`.
pub async fn wait_settled(storage: &Storage, queue: &str, total: u64, limit: Duration) -> quern::QueueStats {
    let keys = storage.keys(queue);
    let done = common::wait_until(limit, || async {
        let s = storage.stats(&keys).await.unwrap();
        s.completed + s.dead >= total
    })
    .await;
    let stats = storage.stats(&keys).await.unwrap();
    assert!(done, "not all {total} jobs settled within {limit:?}: {stats:?}");
    stats
}

/// Logs to the test output only when `RUST_LOG` is set: the planned failures of this file would
/// otherwise flood `cargo test` (worker threads are not captured by the test harness).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        common::init_tracing();
    }
}

/// Keeps the worker's panic hook from printing the panics this file causes on purpose.
pub fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let planned = message.is_some_and(|m| m.starts_with("planned panic"));
            if !planned {
                previous(info);
            }
        }));
    });
}

pub async fn insert(conn: &mut AsyncPgConnection, table: &str, n: u64) -> Result<(), diesel::result::Error> {
    diesel::sql_query(format!(
        "INSERT INTO {table} (n) VALUES ($1) ON CONFLICT DO NOTHING"
    ))
    .bind::<BigInt, _>(n as i64)
    .execute(conn)
    .await
    .map(drop)
}
