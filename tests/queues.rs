//! A worker of several queues: an idle queue does not hold back the others.
mod common;

use std::time::Duration;

use quern::{
    EventKind, Events, Job, JobContext, JobError, JobOptions, Producer, Registry, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct OnB;

impl Job for OnB {
    const NAME: &'static str = "q_on_b";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("q_b")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_queue_does_not_hold_the_slots_another_queue_needs() {
    let storage = common::storage(&test_support::redis_url()).await;
    let events = Events::new(64);
    let mut rx = events.subscribe();
    let mut config = WorkerConfig::default();
    config.queues = vec!["q_a".into(), "q_b".into()];
    config.concurrency = 4;
    // An idle claim waits this long: a job held back by it would wait as long.
    config.block = Duration::from_secs(60);
    let worker = Worker::new(storage.clone(), Registry::new().register::<OnB>())
        .config(config)
        .events(events);
    let running = common::RunningWorker::start(worker);
    let id = Producer::new(storage.clone()).enqueue(&OnB).await.unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = rx.recv().await.expect("no event lost");
            if *e.job_id == *id.as_str() && e.kind == EventKind::Succeeded {
                return;
            }
        }
    })
    .await;
    assert!(ran.is_ok(), "the job on q_b ran while q_a's claim was blocked");
    running.stop().await;
}
