//! Every transition of a job is emitted once to in-process subscribers, against real Redis.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use quern::{Backoff, EventKind, Events, Job, JobContext, JobError, JobOptions, Producer, Registry, Worker};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Task {
    kind: String,
}

impl Job for Task {
    const NAME: &'static str = "ev_task";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("events")
            .max_attempts(2)
            .backoff(Backoff::Fixed(Duration::from_millis(10)))
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        match self.kind.as_str() {
            "ok" => Ok(()),
            "flaky" if ctx.attempt == 1 => Err(JobError::msg("first attempt fails")),
            "flaky" => Ok(()),
            _ => Err(JobError::permanent("always fails")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_is_emitted_once() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let events = Events::new(1024);
    let mut rx = events.subscribe();
    let producer = Producer::new(storage.clone()).events(events.clone());
    let ok = producer.enqueue(&Task { kind: "ok".into() }).await.unwrap();
    let flaky = producer.enqueue(&Task { kind: "flaky".into() }).await.unwrap();
    let bad = producer.enqueue(&Task { kind: "bad".into() }).await.unwrap();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Task>()).events(events.clone());
    let running = common::RunningWorker::start(worker);

    let mut seen: HashMap<String, Vec<EventKind>> = HashMap::new();
    let done = |seen: &HashMap<String, Vec<EventKind>>| {
        let ends =
            |id: &str, k: fn(&EventKind) -> bool| seen.get(id).is_some_and(|v| v.last().is_some_and(k));
        ends(ok.as_str(), |k| *k == EventKind::Succeeded)
            && ends(flaky.as_str(), |k| *k == EventKind::Succeeded)
            && ends(bad.as_str(), |k| matches!(k, EventKind::Dead { .. }))
    };
    let collected = tokio::time::timeout(Duration::from_secs(20), async {
        while !done(&seen) {
            let e = rx.recv().await.expect("no event lost");
            seen.entry(e.job_id.to_string()).or_default().push(e.kind);
        }
    })
    .await;
    running.stop().await;
    assert!(collected.is_ok(), "all transitions within 20 s: {seen:?}");
    // Nothing more arrives for these jobs after the worker stopped.
    while let Ok(e) = rx.try_recv() {
        seen.entry(e.job_id.to_string()).or_default().push(e.kind);
    }
    assert_eq!(
        seen[ok.as_str()],
        [EventKind::Enqueued, EventKind::Started, EventKind::Succeeded]
    );
    let f = &seen[flaky.as_str()];
    assert_eq!(f.len(), 5, "{f:?}");
    assert_eq!(
        (&f[0], &f[1], &f[3], &f[4]),
        (
            &EventKind::Enqueued,
            &EventKind::Started,
            &EventKind::Started,
            &EventKind::Succeeded
        )
    );
    assert!(matches!(f[2], EventKind::Retried { .. }));
    let b = &seen[bad.as_str()];
    assert_eq!(b.len(), 3, "{b:?}");
    assert!(matches!(
        b[2],
        EventKind::Dead {
            reason: quern::DeadReason::Permanent
        }
    ));
    storage.delete_queue(&storage.keys("events")).await.unwrap();
}
