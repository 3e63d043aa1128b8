//! No backlog limit: 200,000 jobs queued before the worker starts all run. (A queue whose Lua
//! `unpack`s every due job at once dies at about 8,000.) In a file of its own so that its load
//! does not overlap the latency tests.
mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use common::RunningWorker;
use quern::{Job, JobContext, JobError, JobOptions, Producer, Registry, Worker};
use serde::{Deserialize, Serialize};

static SEEN: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

#[derive(Serialize, Deserialize)]
struct Mark {
    n: u64,
}

impl Job for Mark {
    const NAME: &'static str = "mark";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("backlog")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        SEEN.lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(self.n);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_200k_jobs_all_run() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("backlog");
    let producer = Producer::new(storage.clone());
    let jobs: Vec<Mark> = (0..200_000).map(|n| Mark { n }).collect();
    producer.enqueue_many(&jobs).await.unwrap();
    assert_eq!(storage.stats(&keys).await.unwrap().pending, 200_000);
    let w =
        Worker::new(storage.clone(), Registry::new().register::<Mark>()).configure(|c| c.concurrency = 256);
    let w = RunningWorker::start(w);
    let done = common::wait_until(Duration::from_secs(240), || async {
        storage.stats(&keys).await.unwrap().completed >= 200_000
    })
    .await;
    let report = w.stop().await;
    assert!(
        done,
        "not all jobs completed: {:?}",
        storage.stats(&keys).await.unwrap()
    );
    assert_eq!(report.succeeded, 200_000);
    let seen = SEEN.lock().unwrap().as_ref().map_or(0, HashSet::len);
    assert_eq!(seen, 200_000, "every job ran");
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 0));
    storage.delete_queue(&keys).await.unwrap();
}
