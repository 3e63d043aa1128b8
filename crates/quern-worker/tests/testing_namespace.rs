//! `quern_worker::testing::Namespace` on real Redis: assertions on what is enqueued, drain,
//! the test clock, isolation and cleanup; jobs that enqueue jobs through a `Producer` resource. Every test has a namespace (a key prefix) of its own.

use std::time::Duration;

use futures_util::FutureExt;
use quern_core::{Backoff, Job, JobContext, JobError, JobOptions};
use quern_redis::Producer;
use quern_worker::Registry;
use quern_worker::testing::{DrainLimit, DrainStopped, Namespace, RedisServer};
use serde::{Deserialize, Serialize};

/// An order that, once placed, enqueues one receipt per copy.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    copies: u64,
}

impl Job for Order {
    const NAME: &'static str = "order";
    type Resources = Producer;

    fn options() -> JobOptions {
        JobOptions::new().queue("orders")
    }

    async fn run(self, _: &JobContext, producer: &mut Producer) -> Result<(), JobError> {
        for copy in 0..self.copies {
            producer
                .enqueue(&Receipt {
                    order: self.id * 100 + copy,
                })
                .await?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Receipt {
    order: u64,
}

impl Job for Receipt {
    const NAME: &'static str = "receipt";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new().queue("receipts")
    }

    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

/// Fails its first attempt; retried ten minutes later.
#[derive(Serialize, Deserialize)]
struct Flaky;

impl Job for Flaky {
    const NAME: &'static str = "flaky";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new()
            .queue("flaky")
            .backoff(Backoff::Fixed(Duration::from_secs(600)))
    }

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        if ctx.attempt == 1 {
            return Err(JobError::msg("the payment service is down"));
        }
        Ok(())
    }
}

/// Enqueues its successor, forever.
#[derive(Serialize, Deserialize)]
struct Forever {
    n: u64,
}

impl Job for Forever {
    const NAME: &'static str = "forever";
    type Resources = Producer;

    fn options() -> JobOptions {
        JobOptions::new().queue("forever")
    }

    async fn run(self, _: &JobContext, producer: &mut Producer) -> Result<(), JobError> {
        producer.enqueue(&Forever { n: self.n + 1 }).await?;
        Ok(())
    }
}

fn registry() -> Registry {
    Registry::new()
        .register::<Order>()
        .register::<Receipt>()
        .register::<Flaky>()
        .register::<Forever>()
}

/// The panic message of `fut`, which must panic.
async fn panic_of(fut: impl std::future::Future<Output = ()>) -> String {
    let panic = std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .expect_err("it panics");
    panic.downcast_ref::<String>().cloned().unwrap_or_else(|| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn assertions_count_exactly_and_list_what_is_enqueued() {
    let ns = Namespace::new(registry()).await;
    ns.enqueue(&Receipt { order: 1 }).await;
    ns.enqueue(&Receipt { order: 1 }).await;
    ns.enqueue(&Receipt { order: 2 }).await;
    ns.producer()
        .enqueue_in(&Receipt { order: 3 }, Duration::from_secs(3600))
        .await
        .unwrap();

    ns.assert_enqueued::<Receipt>(|r| r.order == 2).await;
    ns.assert_enqueued::<Receipt>(|r| r.order == 3).await; // scheduled counts too
    ns.assert_enqueued_times::<Receipt>(2, |r| r.order == 1).await;
    ns.assert_not_enqueued::<Receipt>(|r| r.order == 4).await;
    ns.assert_not_enqueued::<Order>(|_| true).await;
    assert_eq!(
        ns.enqueued::<Receipt>().await,
        [1, 1, 2, 3].map(|order| Receipt { order }),
        "pending oldest first, then scheduled"
    );

    let message = panic_of(ns.assert_enqueued::<Receipt>(|r| r.order == 1)).await;
    assert!(
        message.contains("expected 1 matching \"receipt\" job(s) enqueued, found 2"),
        "{message}"
    );
    assert!(
        message.contains(r#"receipt {"order":2} — pending in queue "receipts""#),
        "{message}"
    );
    assert!(
        message.contains(r#"receipt {"order":3} — scheduled in queue "receipts", due in 3600000 ms"#),
        "{message}"
    );
    let message = panic_of(ns.assert_not_enqueued::<Receipt>(|r| r.order == 2)).await;
    assert!(message.contains("expected 0"), "{message}");
}

#[tokio::test]
async fn perform_runs_with_the_namespaces_worker_and_what_it_enqueues_can_be_asserted() {
    let ns = Namespace::new(registry()).await;
    ns.perform(&Order { id: 4, copies: 2 }).await.assert_succeeded();
    ns.assert_enqueued::<Receipt>(|r| r.order == 400).await;
    ns.assert_enqueued::<Receipt>(|r| r.order == 401).await;
    ns.assert_not_enqueued::<Order>(|_| true).await;
}

#[tokio::test]
async fn drain_runs_jobs_and_the_jobs_they_enqueue() {
    let ns = Namespace::new(registry()).await;
    ns.enqueue(&Order { id: 1, copies: 3 }).await;
    ns.enqueue(&Order { id: 2, copies: 0 }).await;
    let drained = ns.drain().await;
    assert_eq!((drained.executions, drained.succeeded), (5, 5), "{drained:?}");
    assert_eq!((drained.retried, drained.dead, drained.stopped), (0, 0, None));
    ns.assert_not_enqueued::<Receipt>(|_| true).await;
    ns.assert_not_enqueued::<Order>(|_| true).await;
    // Nothing left: a second drain starts no worker and runs nothing.
    assert_eq!(ns.drain().await.executions, 0);
}

#[tokio::test]
async fn delayed_jobs_run_when_the_test_clock_reaches_them() {
    let ns = Namespace::new(registry()).await;
    ns.producer()
        .enqueue_in(&Receipt { order: 9 }, Duration::from_secs(3600))
        .await
        .unwrap();
    let early = ns.drain().await;
    assert_eq!((early.executions, early.scheduled), (0, 1), "{early:?}");

    ns.clock().advance(Duration::from_secs(3599));
    assert_eq!(ns.drain().await.executions, 0, "one second early");
    ns.clock().advance(Duration::from_secs(1));
    let due = ns.drain().await;
    assert_eq!(
        (due.executions, due.succeeded, due.scheduled),
        (1, 1, 0),
        "{due:?}"
    );
}

#[tokio::test]
async fn a_retry_waits_for_the_test_clock() {
    let ns = Namespace::new(registry()).await;
    ns.enqueue(&Flaky).await;
    let first = ns.drain().await;
    assert_eq!(
        (first.executions, first.retried, first.retrying),
        (1, 1, 1),
        "{first:?}"
    );
    ns.assert_enqueued::<Flaky>(|_| true).await; // waiting for its retry

    ns.clock().advance(Duration::from_secs(600));
    let second = ns.drain().await;
    assert_eq!(
        (second.executions, second.succeeded, second.retrying),
        (1, 1, 0),
        "{second:?}"
    );
    assert_eq!(
        second.events.iter().find(|e| e.attempt == 2).map(|e| &*e.job),
        Some("flaky")
    );
}

#[tokio::test]
async fn a_drain_that_never_empties_stops_at_its_bound() {
    let ns = Namespace::new(registry()).await;
    ns.enqueue(&Forever { n: 0 }).await;
    let drained = ns.drain_with(DrainLimit::max_jobs(5)).await;
    assert_eq!(drained.stopped, Some(DrainStopped::MaxJobs), "{drained:?}");
    assert!(drained.executions >= 5, "{drained:?}");
    assert_eq!(
        ns.enqueued::<Forever>().await.len(),
        1,
        "the next one waits, nothing is lost"
    );
}

#[tokio::test]
async fn namespaces_are_isolated_and_their_keys_are_deleted_on_drop() {
    let a = Namespace::new(registry()).await;
    let b = Namespace::new(registry()).await;
    assert_ne!(a.prefix(), b.prefix());
    a.enqueue(&Receipt { order: 1 }).await;
    a.producer()
        .enqueue_in(&Receipt { order: 2 }, Duration::from_secs(60))
        .await
        .unwrap();
    b.assert_not_enqueued::<Receipt>(|_| true).await;
    assert!(b.enqueued::<Receipt>().await.is_empty());

    let keys = a.storage().keys("receipts");
    let client = redis::Client::open(a.redis_config().url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&keys.stream).arg(&keys.scheduled).arg(&keys.jobs);
        cmd.arg(format!("{}:queues", a.prefix()));
        let conn = conn.clone();
        async move {
            let mut conn = conn;
            cmd.query_async::<u64>(&mut conn).await.unwrap()
        }
    };
    assert_eq!(
        exists(&mut conn).await,
        4,
        "stream, scheduled set, index, queues set"
    );
    let check = exists(&mut conn);
    drop(a);
    assert_eq!(check.await, 0, "every key of the namespace is gone");
}

#[tokio::test]
async fn a_private_server_hosts_a_namespace() {
    let server = tokio::task::spawn_blocking(RedisServer::start).await.unwrap();
    let ns = Namespace::on(&server.url(), registry()).await.unwrap();
    ns.enqueue(&Order { id: 3, copies: 1 }).await;
    assert_eq!(ns.drain().await.succeeded, 2);
    drop(ns);
    drop(server);
}

/// Never ends on its own.
#[derive(Serialize, Deserialize)]
struct Hangs;

impl Job for Hangs {
    const NAME: &'static str = "hangs";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new().queue("hangs")
    }

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        ctx.shutdown.wait().await;
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_drain_stops_at_its_time_bound_and_gives_the_running_job_back() {
    let ns = Namespace::new(Registry::new().register::<Hangs>())
        .await
        .configure_worker(|w| w.configure(|c| c.grace = Duration::from_millis(100)));
    ns.enqueue(&Hangs).await;
    let drained = ns
        .drain_with(DrainLimit::timeout(Duration::from_millis(300)))
        .await;
    assert_eq!(drained.stopped, Some(DrainStopped::Timeout), "{drained:?}");
    assert_eq!((drained.executions, drained.given_back), (1, 1), "{drained:?}");
    ns.assert_enqueued::<Hangs>(|_| true).await;
}

/// Refuses every configuration, as `IsolatedPg` refuses one without a database.
struct Unconfigured;

impl quern_core::Resource for Unconfigured {
    async fn acquire(_: quern_core::ResourceContext<'_>) -> Result<Self, JobError> {
        Ok(Unconfigured)
    }

    async fn release(self, _: quern_core::Outcome) {}

    fn check(_: &quern_core::Extensions) -> Result<(), String> {
        Err("set UNCONFIGURED_URL".into())
    }
}

#[derive(Serialize, Deserialize)]
struct NeedsSetup;

impl Job for NeedsSetup {
    const NAME: &'static str = "needs_setup";
    type Resources = Unconfigured;

    async fn run(self, _: &JobContext, _: &mut Unconfigured) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_drain_whose_worker_cannot_start_says_why_at_once() {
    let ns = Namespace::new(Registry::new().register::<NeedsSetup>()).await;
    ns.enqueue(&NeedsSetup).await;
    let started = std::time::Instant::now();
    let message = panic_of(async {
        ns.drain().await;
    })
    .await;
    assert!(message.contains("the drain's worker did not start"), "{message}");
    assert!(message.contains("set UNCONFIGURED_URL"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not after the drain's 30 s bound"
    );
}
