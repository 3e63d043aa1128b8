//! Enqueue and run: the whole path against real Redis.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quern::{Job, JobContext, JobError, JobOptions, Producer, Registry, Worker};
use serde::{Deserialize, Serialize};

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
struct Add {
    n: u64,
}

impl Job for Add {
    const NAME: &'static str = "add";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("basic")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        DONE.fetch_add(self.n, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_jobs_run_and_leave_nothing_behind() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Add> = (1..=1000).map(|n| Add { n }).collect();
    producer.enqueue_many(&jobs).await.unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let worker = Worker::new(storage.clone(), Registry::new().register::<Add>());
    let s2 = stop.clone();
    let handle = tokio::spawn(worker.run(async move { s2.notified().await }));
    let keys = storage.keys("basic");
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            storage.stats(&keys).await.unwrap().completed == 1000
        })
        .await
    );
    stop.notify_one();
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.succeeded, 1000);
    assert_eq!(DONE.load(Ordering::SeqCst), 500_500);
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 0));
    storage.delete_queue(&keys).await.unwrap();
}
