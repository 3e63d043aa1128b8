//! Finding a job costs a bounded number of commands however long the queue is: no `ZSCAN`, no
//! `XRANGE` over the stream. Counted with `INFO commandstats` on a private server, so no other
//! test's commands are counted.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Note, conn, storage_at};
use quern_core::{Broker, JobState};
use quern_redis::{Inspector, Producer};
use test_support::RedisServer;

/// Calls per command, as `INFO commandstats` counts them (commands run by scripts included).
async fn calls(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), n))
        })
        .collect()
}

#[tokio::test]
async fn finding_a_job_among_5000_takes_a_bounded_number_of_commands() {
    let server = RedisServer::start();
    let storage = storage_at(&server.url(), "bounded").await;
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Note> = (0..5000).map(|n| Note { n }).collect();
    let ids = producer.enqueue_many(&jobs).await.unwrap();
    let scheduled = producer
        .enqueue_in(&Note { n: 1 }, Duration::from_secs(3600))
        .await
        .unwrap();
    let q = storage.queue("default").unwrap();
    storage.prepare(&q).await.unwrap();
    let inspector = Inspector::new(storage.clone());
    let mut admin = conn(&storage).await;

    for (id, state) in [
        (ids[4321].to_string(), Some(JobState::Pending)),
        (scheduled.to_string(), Some(JobState::Scheduled)),
        ("missing-id".to_owned(), None),
        ("default/1-0".to_owned(), None),
    ] {
        // Once to load the scripts, then counted.
        inspector.find_job(&id, None).await.unwrap();
        let before = calls(&mut admin).await;
        let found = inspector.find_job(&id, None).await.unwrap();
        let after = calls(&mut admin).await;
        assert_eq!(found.map(|f| f.state), state, "{id}");
        let delta: HashMap<&str, u64> = after
            .iter()
            .map(|(k, n)| (k.as_str(), n - before.get(k).copied().unwrap_or(0)))
            .filter(|(k, n)| *n > 0 && *k != "info")
            .collect();
        let total: u64 = delta.values().sum();
        assert!(
            !delta.contains_key("zscan") && !delta.contains_key("hscan"),
            "{id}: {delta:?}"
        );
        assert!(delta.get("xrange").copied().unwrap_or(0) <= 1, "{id}: {delta:?}");
        assert!(total <= 10, "{id}: {total} commands: {delta:?}");
    }
}
