//! Seed-and-inspect helpers shared by the integration tests: a storage under a prefix of its
//! own, a job type, what the worker would name a delivered job, and cleanup.

#![allow(dead_code)]

use std::time::Duration;

use quern_core::envelope::decode_envelope;
use quern_core::{Delivery, Job, JobId};
use quern_redis::{RedisConfig, Storage};

pub const SHORT: Duration = Duration::from_millis(20);

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Note {
    pub n: u64,
}

impl Job for Note {
    const NAME: &'static str = "note";
    type Resources = ();
    async fn run(self, _: &quern_core::JobContext, _: &mut ()) -> Result<(), quern_core::JobError> {
        Ok(())
    }
}

/// A storage on `url` under a key prefix of its own.
pub async fn storage_at(url: &str, name: &str) -> Storage {
    let prefix = test_support::unique_name(name);
    Storage::connect(RedisConfig::new(url).prefix(prefix))
        .await
        .expect("Redis")
}

/// A storage on the shared Redis under a key prefix of its own.
pub async fn storage(name: &str) -> Storage {
    storage_at(&test_support::redis_url(), name).await
}

/// A plain connection to the storage's server.
pub async fn conn(storage: &Storage) -> redis::aio::MultiplexedConnection {
    redis::Client::open(storage.config().url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The job id the worker settles `d` under: the id the entry carries, else the envelope's own,
/// else `<queue>/<entry id>`; and whether the job has an index entry to remove (the first two).
pub fn job_id(queue: &str, d: &Delivery) -> (String, bool) {
    if let Some(i) = &d.job_id {
        return (i.clone(), true);
    }
    match decode_envelope(&d.envelope) {
        Ok(env) if !env.id.is_unset() => (env.id.to_string(), true),
        _ => (JobId::for_entry(queue, &d.entry_id).to_string(), false),
    }
}

/// `Settle::Complete` as the worker writes it for `d`.
pub fn complete(queue: &str, d: &Delivery) -> quern_core::Settle {
    let (id, indexed) = job_id(queue, d);
    quern_core::Settle::Complete {
        entry_id: d.entry_id.clone(),
        job_id: indexed.then_some(id),
    }
}

/// How many jobs the queue's index holds.
pub async fn index_len(storage: &Storage, queue: &str) -> u64 {
    redis::cmd("HLEN")
        .arg(&storage.keys(queue).jobs)
        .query_async(&mut conn(storage).await)
        .await
        .unwrap()
}

/// Deletes every key under the storage's prefix.
pub async fn cleanup(storage: &Storage) {
    let mut conn = conn(storage).await;
    let pattern = format!("{}:*", storage.config().prefix);
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}
