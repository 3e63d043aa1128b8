//! `quern_worker::testing::perform`: one job through the real executor, without Redis (except
//! the `IsolatedPg` test, which uses the test PostgreSQL).

use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use quern_core::lifecycle::{AttemptOutcome, Fate, Stage};
use quern_core::{
    Backoff, DeadReason, Job, JobContext, JobError, JobOptions, ManualClock, Outcome, Resource,
    ResourceContext,
};
use quern_diesel::{IsolatedPg, PgConfig};
use quern_worker::middleware::{Execution, Layer, Service};
use quern_worker::testing::{Performer, perform};
use quern_worker::{Registry, Worker};
use serde::{Deserialize, Serialize};

/// Fails as its fields say, after recording what it saw.
#[derive(Serialize, Deserialize)]
struct Charge {
    order: u64,
    /// Never serialized: a job that still sees it ran on the original, not on a decoded copy.
    #[serde(skip)]
    token: String,
    #[serde(default)]
    fail: Option<String>,
}

static SEEN_TOKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Job for Charge {
    const NAME: &'static str = "charge";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new()
            .queue("billing")
            .max_attempts(3)
            .backoff(Backoff::Fixed(Duration::from_secs(60)))
            .timeout(Duration::from_millis(200))
    }

    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        SEEN_TOKEN.lock().unwrap().push(self.token.clone());
        match self.fail.as_deref() {
            Some("error") => {
                let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
                Err(JobError::from(cause).context(format!("charging order {}", self.order)))
            }
            Some("permanent") => Err(JobError::permanent("card declined")),
            Some("panic") => panic!("order {} is corrupt", self.order),
            Some("hang") => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn charge(fail: Option<&str>) -> Charge {
    Charge {
        order: 7,
        token: "secret".into(),
        fail: fail.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_job_runs_on_its_decoded_payload_and_succeeds() {
    let performed = perform(&charge(None)).await;
    performed.assert_succeeded();
    assert_eq!((performed.fate, performed.attempt), (Fate::Complete, 1));
    assert!(performed.failure.is_none() && performed.chain().is_empty());
    assert!(
        SEEN_TOKEN.lock().unwrap().iter().all(String::is_empty),
        "the job ran on what came out of the JSON round trip"
    );
}

#[tokio::test]
async fn a_failure_keeps_its_chain_and_says_when_a_worker_would_retry() {
    let manual = ManualClock::at(1_000_000);
    let performed = Performer::new()
        .clock(manual.clock())
        .perform(&charge(Some("error")))
        .await;
    assert_eq!(performed.chain(), ["charging order 7", "connection refused"]);
    assert_eq!(performed.stage(), Some(Stage::Run));
    assert!(performed.is_retryable() && performed.will_run_again() && !performed.is_dead());
    assert_eq!(
        performed.fate,
        Fate::Retry { at_ms: 1_060_000 },
        "the job's own backoff, from the clock"
    );
    assert!(performed.error().is_some_and(|e| e.is_retryable()));
    assert_eq!(performed.failure.as_ref().map(|f| f.kind.as_str()), Some("error"));

    let last = Performer::new().attempt(3).perform(&charge(Some("error"))).await;
    assert_eq!(
        last.fate,
        Fate::Dead {
            reason: DeadReason::MaxAttempts
        }
    );

    let permanent = perform(&charge(Some("permanent"))).await;
    assert!(!permanent.is_retryable());
    assert_eq!(
        permanent.fate,
        Fate::Dead {
            reason: DeadReason::Permanent
        }
    );
    let message = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| permanent.assert_succeeded()))
        .expect_err("assert_succeeded panics on a failure");
    let message = message.downcast_ref::<String>().expect("a formatted message");
    assert!(message.contains("card declined"), "{message}");
}

#[tokio::test]
async fn a_panic_is_caught_with_its_location() {
    let performed = perform(&charge(Some("panic"))).await;
    let message = performed.panic_message().expect("it panicked");
    assert!(message.contains("order 7 is corrupt"), "{message}");
    assert!(message.contains("testing_perform.rs"), "its location: {message}");
    assert!(performed.is_retryable() && performed.will_run_again());
    performed.assert_failed();
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_is_stopped() {
    let performed = perform(&charge(Some("hang"))).await;
    assert!(performed.is_timed_out(), "{performed:?}");
    assert!(matches!(
        performed.outcome,
        AttemptOutcome::TimedOut { after } if after == Duration::from_millis(200)
    ));
    assert!(performed.will_run_again());
}

/// A payload whose JSON does not decode back: the worker would dead-letter it, and so says
/// `perform`, with the decode diagnostic.
#[derive(Serialize, Deserialize)]
struct Lopsided {
    #[serde(serialize_with = "as_text")]
    count: u64,
}

fn as_text<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

impl Job for Lopsided {
    const NAME: &'static str = "lopsided";
    type Resources = ();

    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        unreachable!("never decoded")
    }
}

#[tokio::test]
async fn a_payload_that_does_not_decode_back_is_dead_with_the_diagnostic() {
    let performed = perform(&Lopsided { count: 3 }).await;
    let AttemptOutcome::Undecodable(err) = &performed.outcome else {
        panic!("expected undecodable, got {performed:?}");
    };
    assert_eq!(err.path.as_deref(), Some("count"), "{err}");
    assert_eq!(
        performed.fate,
        Fate::Dead {
            reason: DeadReason::Undecodable
        }
    );
}

/// Records its lifecycle, and fails to acquire when the extension says so.
struct Tracked;

#[derive(Clone)]
struct Log(std::sync::Arc<Mutex<Vec<String>>>);

impl Resource for Tracked {
    async fn acquire(cx: ResourceContext<'_>) -> Result<Self, JobError> {
        let log = cx.extensions.get::<Log>().expect("a Log extension");
        log.0
            .lock()
            .unwrap()
            .push(format!("acquire attempt {}", cx.job.attempt));
        Ok(Tracked)
    }

    async fn release(self, _: Outcome) {}
}

#[derive(Serialize, Deserialize)]
struct Uses {
    fail: bool,
}

impl Job for Uses {
    const NAME: &'static str = "uses";
    type Resources = (Tracked, Released);

    async fn run(self, _: &JobContext, _: &mut (Tracked, Released)) -> Result<(), JobError> {
        if self.fail {
            return Err(JobError::msg("no"));
        }
        Ok(())
    }
}

/// Writes how the execution ended into the `Log` when released.
struct Released(Log);

impl Resource for Released {
    async fn acquire(cx: ResourceContext<'_>) -> Result<Self, JobError> {
        Ok(Released(
            cx.extensions.get::<Log>().expect("a Log extension").clone(),
        ))
    }

    async fn release(self, outcome: Outcome) {
        self.0.0.lock().unwrap().push(format!("release {outcome:?}"));
    }
}

/// Counts executions through it, and short-circuits jobs named "uses" at attempt 9.
#[derive(Clone)]
struct Gate<S>(S, std::sync::Arc<AtomicU32>);

struct GateLayer(std::sync::Arc<AtomicU32>);

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate(inner, self.0.clone())
    }
}

impl<S> Service<Execution> for Gate<S>
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
        self.1.fetch_add(1, Ordering::SeqCst);
        if exec.ctx().attempt == 9 {
            return Box::pin(async { Ok(AttemptOutcome::Cancelled) });
        }
        Box::pin(self.0.call(exec))
    }
}

#[tokio::test]
async fn a_workers_extensions_resources_and_middleware_all_apply() {
    let log = Log(Default::default());
    let through = std::sync::Arc::new(AtomicU32::new(0));
    let worker = Worker::new(
        quern_core::broker::memory::MemoryBroker::new(),
        Registry::new().register::<Uses>(),
    )
    .extension(log.clone())
    .layer(GateLayer(through.clone()));
    let performer = Performer::of(&worker);

    performer.perform(&Uses { fail: false }).await.assert_succeeded();
    let failed = performer.attempt(2).perform(&Uses { fail: true }).await;
    assert_eq!(failed.chain(), ["no"]);
    assert_eq!(
        *log.0.lock().unwrap(),
        [
            "acquire attempt 1",
            "release Succeeded",
            "acquire attempt 2",
            "release Failed"
        ]
    );
    let short = Performer::of(&worker)
        .attempt(9)
        .perform(&Uses { fail: false })
        .await;
    assert!(matches!(short.outcome, AttemptOutcome::Cancelled), "{short:?}");
    assert_eq!(short.fate, Fate::Cancelled);
    assert_eq!(
        log.0.lock().unwrap().len(),
        4,
        "short-circuited: nothing acquired"
    );
    assert_eq!(through.load(Ordering::SeqCst), 3);
}

/// Opens a connection of its execution's pool.
#[derive(Serialize, Deserialize)]
struct Touch;

impl Job for Touch {
    const NAME: &'static str = "touch";
    type Resources = IsolatedPg;

    async fn run(self, _: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        let _conn = pg.get().await?;
        assert_eq!(pg.connections_opened(), 1);
        Ok(())
    }
}

#[tokio::test]
async fn an_isolated_pg_job_runs_against_the_test_database() {
    let url = tokio::task::spawn_blocking(test_support::database_url)
        .await
        .unwrap();
    let ok = Performer::new()
        .extension(PgConfig::new().database_url(url))
        .perform(&Touch)
        .await;
    ok.assert_succeeded();

    let refused = Performer::new()
        .extension(PgConfig::new().database_url("postgres://root@127.0.0.1:1/test"))
        .perform(&Touch)
        .await;
    assert!(refused.is_retryable(), "{refused:?}");
    assert!(
        refused.chain().iter().any(|m| m.contains("127.0.0.1:1")),
        "{:?}",
        refused.chain()
    );
}

/// Needs a `Log` extension, as `IsolatedPg` needs a database: checked before anything runs.
struct NeedsLog;

impl Resource for NeedsLog {
    async fn acquire(_: ResourceContext<'_>) -> Result<Self, JobError> {
        Ok(NeedsLog)
    }

    async fn release(self, _: Outcome) {}

    fn check(extensions: &quern_core::Extensions) -> Result<(), String> {
        match extensions.get::<Log>() {
            Some(_) => Ok(()),
            None => Err("no Log configured: add one with Worker::extension".into()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Picky;

impl Job for Picky {
    const NAME: &'static str = "picky";
    type Resources = NeedsLog;

    async fn run(self, _: &JobContext, _: &mut NeedsLog) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
#[should_panic(expected = "a worker would refuse to start: job type \"picky\": no Log configured")]
async fn a_job_whose_resources_are_not_configured_is_refused_as_a_worker_would() {
    perform(&Picky).await.assert_succeeded();
}

#[tokio::test]
async fn a_job_whose_resources_are_configured_runs() {
    Performer::new()
        .extension(Log(Default::default()))
        .perform(&Picky)
        .await
        .assert_succeeded();
}

/// Keeps the sum as its result.
#[derive(Serialize, Deserialize)]
struct Sum {
    a: u64,
    b: u64,
}

impl Job for Sum {
    const NAME: &'static str = "sum";
    type Resources = ();

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        ctx.set_result(&(self.a + self.b))
    }
}

#[tokio::test]
async fn the_result_a_job_sets_is_returned() {
    let performed = perform(&Sum { a: 2, b: 3 }).await;
    performed.assert_succeeded();
    assert_eq!(performed.result_as::<u64>().map(Result::unwrap), Some(5));
    assert!(
        perform(&charge(None)).await.result.is_none(),
        "none set, none returned"
    );
}
