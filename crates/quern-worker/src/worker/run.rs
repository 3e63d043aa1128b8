//! Starting a worker's components for each queue, and the shutdown sequence: stop claiming, let
//! running jobs finish within the grace period, cancel the rest, write every outcome, give back
//! what did not finish.
//!
//! The components run on a runtime of the worker's own (one thread, its own connections), the
//! executions on the caller's: a job that blocks its thread cannot stop leases from being
//! renewed, jobs from being claimed, or results from being written.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use quern_core::{Broker, ErrorChain, Shutdown};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::fetcher::Fetcher;
use super::{Counters, Shared, Worker, WorkerError, WorkerReport};
use crate::executor::Limits;
use crate::in_flight::InFlight;
use crate::settler::Settler;
use crate::watchdog::Watchdog;
use crate::{lease, promoter};

pub(super) async fn run<B: Broker>(
    worker: Worker<B>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<WorkerReport, WorkerError> {
    // Jobs run where the caller expects them: on its runtime.
    let executions = Handle::current();
    if !worker.config.own_runtime {
        return components(worker, executions, shutdown).await;
    }
    let runtime = OwnRuntime::start()?;
    let stop = Shutdown::new();
    let mut started = runtime.handle().spawn(
        components(worker, executions, super::shutdown_from(&stop)).instrument(tracing::Span::current()),
    );
    // `shutdown` is the caller's, maybe tied to its runtime (a signal handler): awaited here.
    let ended = tokio::select! {
        ended = &mut started => ended,
        () = shutdown => {
            stop.trigger();
            started.await
        }
    };
    drop(runtime);
    match ended {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the worker's runtime stopped under it: {e}"),
    }
}

/// The worker's own runtime; shut down without waiting when dropped, which is allowed in async
/// code (dropping a `Runtime` there panics). Everything on it has ended by then, unless the
/// caller dropped `Worker::run` midway: its tasks are then dropped with it.
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn start() -> Result<Self, WorkerError> {
        // One thread: the components only wait on the network and hand work over; decoding and
        // deciding each job's fate happen in its execution, on the caller's runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quern-worker")
            .enable_all()
            .build()
            .map_err(WorkerError::Runtime)?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Every component, on the current runtime, until `shutdown`; executions on `executions`.
async fn components<B: Broker>(
    worker: Worker<B>,
    executions_on: Handle,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<WorkerReport, WorkerError> {
    if worker.config.capture_panics {
        crate::panic::install_panic_hook();
    }
    let names = if worker.config.queues.is_empty() {
        worker.registry.queues()
    } else {
        worker.config.queues.clone()
    };
    if names.is_empty() {
        return Err(WorkerError::NoQueues);
    }
    // Said now, once, rather than by every such job failing until it is dead.
    let problems = worker.registry.check(&names, &worker.extensions);
    if !problems.is_empty() {
        return Err(WorkerError::Misconfigured(problems));
    }
    // Connections of this runtime's own: their I/O must not wait on the caller's runtime.
    let broker = worker.broker.reopen().await.map_err(WorkerError::broker)?;
    let config = Arc::new(worker.config);
    broker.check_server().await;
    let mut queues = Vec::new();
    for name in &names {
        let q = broker.queue(name).map_err(WorkerError::broker)?;
        broker.prepare(&q).await.map_err(WorkerError::broker)?;
        queues.push((Arc::<str>::from(name.as_str()), q));
    }
    let ticker =
        crate::periodic::ticker::start(&broker, &worker.registry, &names, &worker.clock, &worker.events);
    tracing::info!(broker = %broker.describe(), queues = ?names, concurrency = config.concurrency,
        consumer = %config.consumer, jobs = ?worker.registry.names(), layers = worker.stack.len_hint(), "worker started");

    let soft_stop = Shutdown::new(); // stop claiming; jobs see ctx.is_shutting_down()
    let hard_stop = Shutdown::new(); // cancel running executions
    let background_stop = Shutdown::new(); // renewers, reapers, promoters
    let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let executions = TaskTracker::new();
    let watchdog = Arc::new(Watchdog::new(config.watchdog));
    let shared = Arc::new(Shared {
        registry: worker.registry,
        extensions: Arc::new(worker.extensions),
        limits: Limits {
            hard_stop: hard_stop.clone(),
            watchdog: watchdog.clone(),
            cancel_grace: config.cancel_grace,
        },
        counters: Counters::default(),
        max_payload: broker.max_payload_bytes(),
        soft_stop: soft_stop.clone(),
        stack: worker.stack,
        events: worker.events,
        clock: worker.clock,
        lease: config.lease,
    });

    let mut fetchers = Vec::new();
    let mut settlers = Vec::new();
    let mut background = Vec::new();
    let settle_give_up = Shutdown::new();
    background.push(tokio::spawn(watchdog.clone().run(background_stop.clone())));
    if let Some(ticker) = ticker {
        background.push(tokio::spawn(ticker.run(background_stop.clone())));
    }
    for (name, q) in &queues {
        let in_flight = Arc::new(InFlight::default());
        let renewals = Arc::new(lease::Renewals::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let settler = Settler {
            broker: broker.clone(),
            queue: q.clone(),
            name: name.clone(),
            in_flight: in_flight.clone(),
            retention: config.dead_retention,
            clock: shared.clock.clone(),
        };
        settlers.push(tokio::spawn(settler.run(rx, settle_give_up.clone())));
        let keeper = lease::Keeper {
            broker: broker.clone(),
            queue: q.clone(),
            name: name.clone(),
            consumer: config.consumer.clone(),
            in_flight: in_flight.clone(),
            lease: config.lease,
            renewals: renewals.clone(),
        };
        background.push(tokio::spawn(keeper.clone().renew(background_stop.clone())));
        background.push(tokio::spawn(keeper.reap(background_stop.clone())));
        let woken = Arc::new(Notify::new());
        let promoter = promoter::Promoter {
            broker: broker.clone(),
            queue: q.clone(),
            clock: shared.clock.clone(),
            woken: woken.clone(),
        };
        background.push(tokio::spawn(promoter.clone().promote(background_stop.clone())));
        background.push(tokio::spawn(promoter.listen()));
        let (paused_tx, paused) = tokio::sync::watch::channel(false);
        let controller = crate::control::Controller {
            broker: broker.clone(),
            queue: q.clone(),
            name: name.clone(),
            in_flight: in_flight.clone(),
            every: config.control_poll,
            paused: paused_tx,
        };
        // Read once before the first claim: a queue paused before the worker started is
        // never claimed from.
        if let Err(e) = controller.poll().await {
            tracing::warn!(queue = &**name, error = %ErrorChain::of(&e), "could not read whether the queue is paused; reading it again shortly");
        }
        background.push(tokio::spawn(controller.run(background_stop.clone())));
        let fetcher = Fetcher {
            broker: broker.clone(),
            queue: q.clone(),
            name: name.clone(),
            config: config.clone(),
            semaphore: semaphore.clone(),
            in_flight,
            settle: tx,
            shared: shared.clone(),
            executions: executions.clone(),
            runtime: executions_on.clone(),
            renewals,
            paused,
        };
        fetchers.push(tokio::spawn(fetcher.run()));
    }

    shutdown.await;
    tracing::info!(
        grace_ms = config.grace.as_millis() as u64,
        "shutting down: no new jobs; waiting for running ones"
    );
    soft_stop.trigger();
    for f in fetchers {
        let _ = f.await;
    }
    executions.close();
    if tokio::time::timeout(config.grace, executions.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: cancelling running jobs; they go back to their queues");
        hard_stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), executions.wait()).await;
    }
    // Every execution has ended and dropped its sender: the settlers write what is left.
    let settled = async {
        for s in settlers {
            let _ = s.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), settled)
        .await
        .is_err()
    {
        settle_give_up.trigger();
    }
    background_stop.trigger();
    for b in background {
        b.abort();
    }
    let mut released = 0;
    for (name, q) in &queues {
        match broker.release(q, &config.consumer).await {
            Ok(n) => {
                released += n as u64;
                let _ = broker.remove_consumer(q, &config.consumer).await;
            }
            Err(e) => tracing::error!(queue = &**name, error = %ErrorChain::of(&e),
                "could not give jobs back at shutdown; they run again once their lease expires"),
        }
    }
    let c = &shared.counters;
    let report = WorkerReport {
        succeeded: c.succeeded.load(Relaxed),
        failed: c.failed.load(Relaxed),
        dead: c.dead.load(Relaxed),
        released,
        stale: c.stale.load(Relaxed),
        cancelled: c.cancelled.load(Relaxed),
        blocked: watchdog.blocked(),
    };
    tracing::info!(?report, "worker stopped");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use quern_core::broker::memory::MemoryBroker;
    use quern_core::{Backoff, EventKind, Events, Job, JobContext, JobError, JobOptions, ManualClock};

    use super::*;
    use crate::Registry;

    static RUNS: AtomicU32 = AtomicU32::new(0);

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Flaky {
        n: u32,
    }

    impl Job for Flaky {
        const NAME: &'static str = "flaky";
        type Resources = ();

        fn options() -> JobOptions {
            JobOptions::new()
                .queue("flaky")
                .max_attempts(3)
                .backoff(Backoff::Fixed(Duration::from_secs(10)))
        }

        async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
            RUNS.fetch_add(1, Relaxed);
            if ctx.attempt == 1 {
                return Err(JobError::msg("first attempt fails"));
            }
            Ok(())
        }
    }

    async fn next_kind(rx: &mut tokio::sync::broadcast::Receiver<quern_core::Event>) -> quern_core::Event {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("an event within a minute of virtual time")
            .expect("the hub is open")
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_for_the_test_clock_to_reach_its_due_time() {
        let broker = MemoryBroker::new();
        let manual = ManualClock::at(1_000_000);
        let events = Events::new(64);
        let mut rx = events.subscribe();
        let worker = Worker::new(broker.clone(), Registry::new().register::<Flaky>())
            .clock(manual.clock())
            .events(events)
            // Paused time: a runtime of the worker's own would not follow it.
            .configure(|c| {
                c.block = Duration::from_millis(100);
                c.own_runtime = false;
            });
        let stop = Shutdown::new();
        let running = tokio::spawn(worker.run(super::super::shutdown_from(&stop)));
        let q = broker.queue("flaky").unwrap();
        broker
            .push(&q, &[r#"{"job":"flaky","payload":{"n":1}}"#.into()])
            .await
            .unwrap();

        assert_eq!(next_kind(&mut rx).await.kind, EventKind::Started);
        let retried = next_kind(&mut rx).await;
        assert_eq!(
            retried.kind,
            EventKind::Retried { at_ms: 1_010_000 },
            "due after the fixed backoff"
        );
        assert_eq!(
            &*retried.job_id, "flaky/0-1",
            "a job without an id is named by its entry"
        );
        // Virtual time passes, the test clock does not: the retry stays put.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!((RUNS.load(Relaxed), broker.stats("flaky").scheduled), (1, 1));
        manual.advance(Duration::from_secs(10));
        let started = next_kind(&mut rx).await;
        assert_eq!((started.kind, started.attempt), (EventKind::Started, 2));
        assert_eq!(&*started.job_id, "flaky/0-1", "the id survives the retry");
        assert_eq!(next_kind(&mut rx).await.kind, EventKind::Succeeded);

        stop.trigger();
        let report = running.await.unwrap().unwrap();
        assert_eq!((report.succeeded, report.failed, report.dead), (1, 1, 0));
        assert_eq!(RUNS.load(Relaxed), 2);
        let stats = broker.stats("flaky");
        assert_eq!(
            (stats.completed, stats.pending, stats.running, stats.scheduled),
            (1, 0, 0, 0)
        );
    }
}
