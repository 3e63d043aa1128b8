//! Middleware wraps every execution against real Redis: it sees each job before and after,
//! can change the outcome, and can short-circuit so the job never runs.
mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use quern::middleware::{Execution, Layer, Service};
use quern::{AttemptOutcome, Job, JobContext, JobError, JobOptions, Producer, Registry, Worker};
use serde::{Deserialize, Serialize};

static RAN: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
struct Step {
    n: u64,
}

impl Job for Step {
    const NAME: &'static str = "mw_step";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("middleware").max_attempts(1)
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        RAN.fetch_add(1, Ordering::SeqCst);
        if self.n == 13 {
            return Err(JobError::permanent("thirteen is refused by the job"));
        }
        Ok(())
    }
}

/// Records (id, outcome name) of every execution; refuses the jobs in its set without running
/// them.
#[derive(Clone, Default)]
struct Audit(Arc<Mutex<Vec<(String, &'static str)>>>, Arc<Mutex<Vec<String>>>);

impl<S> Layer<S> for Audit {
    type Service = Audited<S>;
    fn layer(&self, inner: S) -> Audited<S> {
        Audited(inner, self.clone())
    }
}

#[derive(Clone)]
struct Audited<S>(S, Audit);

impl<S> Service<Execution> for Audited<S>
where
    S: Service<Execution, Response = AttemptOutcome, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = AttemptOutcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<AttemptOutcome, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, exec: Execution) -> Self::Future {
        let id = exec.ctx().id.to_string();
        let log = self.1.clone();
        if log.1.lock().unwrap().contains(&id) {
            log.0.lock().unwrap().push((id, "short-circuited"));
            return Box::pin(async { Ok(AttemptOutcome::Cancelled) });
        }
        let fut = self.0.call(exec);
        Box::pin(async move {
            let outcome = fut.await?;
            log.0.lock().unwrap().push((id, outcome.name()));
            Ok(outcome)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_sees_every_outcome_and_can_short_circuit() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let ids = producer
        .enqueue_many(&(0..20).map(|n| Step { n }).collect::<Vec<_>>())
        .await
        .unwrap();
    let audit = Audit::default();
    let refused = vec![ids[3].to_string(), ids[17].to_string()];
    audit.1.lock().unwrap().extend(refused.clone());
    let worker = Worker::new(storage.clone(), Registry::new().register::<Step>()).layer(audit.clone());
    let running = common::RunningWorker::start(worker);
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            audit.0.lock().unwrap().len() == 20
        })
        .await,
        "every execution passed the layer"
    );
    let report = running.stop().await;
    let log = audit.0.lock().unwrap().clone();
    let mut short: Vec<String> = log
        .iter()
        .filter(|(_, o)| *o == "short-circuited")
        .map(|(id, _)| id.clone())
        .collect();
    short.sort();
    let mut want = refused.clone();
    want.sort();
    assert_eq!(short, want, "{log:?}");
    // The short-circuited jobs never ran; the others did, and the layer saw how each ended.
    assert_eq!(RAN.load(Ordering::SeqCst), 20 - short.len() as u64);
    let failed = log.iter().filter(|(_, o)| *o == "failed").count();
    let succeeded = log.iter().filter(|(_, o)| *o == "succeeded").count();
    assert_eq!((failed, succeeded + failed + short.len()), (1, 20));
    assert_eq!((report.succeeded, report.dead), (succeeded as u64, 1));
    let stats = storage.stats(&storage.keys("middleware")).await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 1));
    storage.delete_queue(&storage.keys("middleware")).await.unwrap();
}
