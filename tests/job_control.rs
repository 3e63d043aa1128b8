//! Per-enqueue options, caller ids, results and status by id, cancel, snooze, pause and resume,
//! and app state — each against real Redis, through the real worker.
mod common;

use std::time::{Duration, SystemTime};

use quern::{
    Backoff, Cancelled, EnqueueOptions, EventKind, Events, Inspector, Job, JobContext, JobError, JobOptions,
    JobState, Paused, Producer, Registry, Storage, StorageError, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};

/// Adds two numbers; keeps its result for an hour.
#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sum {
    sum: i64,
}

impl Job for Add {
    const NAME: &'static str = "jc_add";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("jc_math")
            .keep_result(Duration::from_secs(3600))
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        ctx.set_result(&Sum { sum: self.a + self.b })
    }
}

/// What `Step` does in its `run`.
#[derive(Serialize, Deserialize, Clone, Copy)]
enum Act {
    Succeed,
    Fail,
    /// Waits for its cancellation, then fails (a cancelled job is never retried).
    WaitForCancel,
    /// Runs on without looking at its cancellation.
    IgnoreCancel,
    /// Snoozes on its first execution, succeeds on the next.
    SnoozeOnce,
    /// Returns a result larger than the limit.
    HugeResult,
    /// Reads the app's state and keeps a result made of it.
    UseState,
}

#[derive(Serialize, Deserialize)]
struct Step {
    act: Act,
}

/// The app's shared state, handed to the worker as an extension.
struct App {
    greeting: String,
}

impl Job for Step {
    const NAME: &'static str = "jc_step";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("jc_steps")
            .max_attempts(3)
            .backoff(Backoff::Fixed(Duration::from_millis(20)))
            .keep_result(Duration::from_secs(3600))
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        match self.act {
            Act::Succeed => Ok(()),
            Act::Fail => Err(JobError::msg("step failed")),
            Act::WaitForCancel => {
                ctx.cancelled().await;
                Err(JobError::msg("stopped: cancelled"))
            }
            Act::IgnoreCancel => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(())
            }
            Act::SnoozeOnce => {
                // The snooze reruns the same attempt: the job knows it ran by its own state.
                if ctx.attempt == 1 && ctx.state::<Snoozed>().is_some_and(Snoozed::first) {
                    return Err(JobError::snooze(Duration::from_millis(50)));
                }
                ctx.set_result(&ctx.attempt)
            }
            Act::HugeResult => ctx.set_result(&"x".repeat(2048)),
            Act::UseState => {
                let app: &App = ctx
                    .state()
                    .ok_or_else(|| JobError::permanent("the worker has no App state"))?;
                ctx.set_result(&format!("{}, job {}", app.greeting, ctx.id))
            }
        }
    }
}

/// Counts executions of `SnoozeOnce` jobs: true the first time only.
#[derive(Default)]
struct Snoozed(std::sync::atomic::AtomicBool);

impl Snoozed {
    fn first(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::SeqCst)
    }
}

fn fast() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.control_poll = Duration::from_millis(50);
    config.cancel_grace = Duration::from_millis(200);
    config.block = Duration::from_millis(100);
    config
}

fn worker(storage: &Storage, events: &Events) -> Worker {
    Worker::new(
        storage.clone(),
        Registry::new().register::<Add>().register::<Step>(),
    )
    .config(fast())
    .events(events.clone())
    .extension(App {
        greeting: "hello".into(),
    })
    .extension(Snoozed::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_enqueue_path_takes_the_options() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());

    // One job: another queue, its own attempt budget, a header.
    let one = producer
        .enqueue_with(
            &Step { act: Act::Succeed },
            EnqueueOptions::new()
                .queue("jc_other")
                .max_attempts(1)
                .header("traceparent", "00-abc-def-01"),
        )
        .await
        .unwrap();
    assert_eq!(one.queue, "jc_other");
    let info = inspector.find_job(one.id.as_str(), None).await.unwrap().unwrap();
    assert_eq!((info.queue.as_str(), info.state), ("jc_other", JobState::Pending));
    let env = info.envelope.unwrap();
    assert!(
        env.contains(r#""max_attempts":1"#) && env.contains(r#""traceparent":"00-abc-def-01""#),
        "{env}"
    );

    // Bulk: the same delay for all.
    let ids = producer
        .enqueue_many_with(
            &[Step { act: Act::Succeed }, Step { act: Act::Succeed }],
            &EnqueueOptions::new().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    for id in &ids {
        let info = inspector.find_job(id.as_str(), None).await.unwrap().unwrap();
        assert_eq!(
            (info.queue.as_str(), info.state),
            ("jc_steps", JobState::Scheduled)
        );
        assert!(info.due_ms.unwrap() > quern::Clock::system().now_ms() + 3_500_000);
    }
    // A caller id names one job: refused in bulk, nothing written.
    let err = producer
        .enqueue_many_with(&[Step { act: Act::Succeed }], &EnqueueOptions::new().id("bulk-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Options(_)), "{err}");

    // Raw JSON: a queue, a time, a caller id.
    let at = SystemTime::now() + Duration::from_secs(600);
    let raw = producer
        .enqueue_json_with(
            "jc_step",
            r#"{"act":"Succeed"}"#,
            EnqueueOptions::new().queue("jc_raw").at(at).id("raw-1"),
        )
        .await
        .unwrap();
    assert_eq!(raw.id.as_str(), "raw-1");
    let info = inspector.find_job("raw-1", None).await.unwrap().unwrap();
    assert_eq!((info.queue.as_str(), info.state), ("jc_raw", JobState::Scheduled));

    // The per-enqueue attempt budget holds in the worker: one failure and it is dead.
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let failing = producer
        .enqueue_with(&Step { act: Act::Fail }, EnqueueOptions::new().max_attempts(1))
        .await
        .unwrap();
    let running = common::RunningWorker::start(worker(&storage, &events));
    let dead = rx
        .event(failing.id.as_str(), |k| {
            matches!(k, EventKind::Dead { .. } | EventKind::Retried { .. })
        })
        .await;
    assert!(matches!(dead.kind, EventKind::Dead { .. }), "{:?}", dead.kind);
    assert_eq!(dead.attempt, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_id_enqueues_one_job_however_often_it_is_sent() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let keys = storage.keys("jc_math");

    let first = producer
        .enqueue_with(&Add { a: 1, b: 2 }, EnqueueOptions::new().id("sum:1"))
        .await
        .unwrap();
    let again = producer
        .enqueue_with(&Add { a: 1, b: 2 }, EnqueueOptions::new().id("sum:1"))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate, "{first:?} {again:?}");
    assert_eq!((first.id.as_str(), again.id.as_str()), ("sum:1", "sum:1"));
    assert_eq!(storage.stats(&keys).await.unwrap().pending, 1, "one job");

    // Delayed with an id: the same.
    let later = EnqueueOptions::new().id("sum:2").delay(Duration::from_secs(3600));
    assert!(
        !producer
            .enqueue_with(&Add { a: 2, b: 2 }, later.clone())
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        producer
            .enqueue_with(&Add { a: 2, b: 2 }, later)
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(storage.stats(&keys).await.unwrap().scheduled, 1);

    // Bad ids: refused with the rule they broke; nothing written.
    for (id, rule) in [
        ("", "it is empty"),
        (&*"x".repeat(129), "it is longer than 128 bytes"),
        (
            "order 7",
            "it has a character outside A-Z a-z 0-9 - _ . : (at byte 5)",
        ),
        (
            "emails/1-0",
            "it has a character outside A-Z a-z 0-9 - _ . : (at byte 6)",
        ),
    ] {
        let err = producer
            .enqueue_with(&Add { a: 0, b: 0 }, EnqueueOptions::new().id(id))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(rule), "{id:?}: {err}");
    }
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!(
        (stats.pending, stats.scheduled),
        (1, 1),
        "nothing more was written"
    );

    // Once it ran, its id is still taken while its result is kept.
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let running = common::RunningWorker::start(worker(&storage, &events));
    rx.event("sum:1", |k| *k == EventKind::Succeeded).await;
    running.stop().await;
    let after = producer
        .enqueue_with(&Add { a: 1, b: 2 }, EnqueueOptions::new().id("sum:1"))
        .await
        .unwrap();
    assert!(
        after.duplicate,
        "a finished job's id is not reused while its record is kept"
    );
    let info = inspector.find_job("sum:1", None).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_status_are_read_by_id() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let plain = producer.enqueue(&Add { a: 20, b: 22 }).await.unwrap();
    let huge = producer.enqueue(&Step { act: Act::HugeResult }).await.unwrap();
    let config = {
        let mut c = fast();
        c.queues = vec!["jc_math".into(), "jc_steps".into()];
        c
    };
    let storage_small = {
        // A result limit of 1 KiB: the huge result is refused.
        let cfg = storage.config().clone().max_payload_bytes(1024);
        Storage::connect(cfg).await.unwrap()
    };
    let w = Worker::new(
        storage_small,
        Registry::new().register::<Add>().register::<Step>(),
    )
    .config(config)
    .events(events.clone());
    let running = common::RunningWorker::start(w);
    rx.event(plain.as_str(), |k| *k == EventKind::Succeeded).await;
    let dead = rx
        .event(huge.as_str(), |k| matches!(k, EventKind::Dead { .. }))
        .await;
    assert_eq!(
        dead.attempt, 3,
        "a refused result fails the attempt, retried per policy"
    );
    running.stop().await;

    let info = inspector.find_job(plain.as_str(), None).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Completed);
    let done = info.finished.expect("a finished record");
    assert_eq!(done.result_as::<Sum>().unwrap().unwrap(), Sum { sum: 42 });
    assert_eq!((done.attempt, done.job.as_str()), (1, "jc_add"));
    assert!(done.enqueued_at > 0 && done.finished_at >= done.enqueued_at);

    let info = inspector.find_job(huge.as_str(), None).await.unwrap().unwrap();
    let record = info.dead.expect("dead");
    assert!(
        record
            .message
            .contains("the job's result is 2050 bytes, over the limit of 1024 bytes"),
        "{}",
        record.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_queued_and_delayed_jobs_and_stops_running_ones() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let keys = storage.keys("jc_steps");

    // Queued and delayed: removed, never run.
    let queued = producer.enqueue(&Step { act: Act::Fail }).await.unwrap();
    let delayed = producer
        .enqueue_in(&Step { act: Act::Fail }, Duration::from_millis(300))
        .await
        .unwrap();
    for (id, was) in [(&queued, JobState::Pending), (&delayed, JobState::Scheduled)] {
        let done = inspector.cancel(id.as_str(), None).await.unwrap();
        assert_eq!(
            done,
            Cancelled::Removed {
                was,
                queue: "jc_steps".into()
            }
        );
        let info = inspector.find_job(id.as_str(), None).await.unwrap().unwrap();
        assert_eq!(info.state, JobState::Cancelled);
        assert_eq!(
            inspector.cancel(id.as_str(), None).await.unwrap(),
            Cancelled::AlreadyFinished {
                state: JobState::Cancelled
            }
        );
    }
    assert_eq!(
        inspector.cancel("no-such-job", None).await.unwrap(),
        Cancelled::NotFound
    );
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.scheduled, stats.cancelled), (0, 0, 2));

    // Running: one stops when told, one ignores it and is stopped after the grace period.
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let polite = producer
        .enqueue(&Step {
            act: Act::WaitForCancel,
        })
        .await
        .unwrap();
    let stubborn = producer
        .enqueue(&Step {
            act: Act::IgnoreCancel,
        })
        .await
        .unwrap();
    let running = common::RunningWorker::start(worker(&storage, &events));
    for id in [&polite, &stubborn] {
        rx.event(id.as_str(), |k| *k == EventKind::Started).await;
        assert_eq!(
            inspector.cancel(id.as_str(), None).await.unwrap(),
            Cancelled::Requested {
                queue: "jc_steps".into()
            }
        );
    }
    for id in [&polite, &stubborn] {
        let end = rx
            .event(id.as_str(), |k| {
                matches!(
                    k,
                    EventKind::Cancelled | EventKind::Retried { .. } | EventKind::Dead { .. }
                )
            })
            .await;
        assert_eq!(end.kind, EventKind::Cancelled, "{id}");
        // The event comes as the fate is decided; the settle is written just after it.
        let settled = common::wait_until(Duration::from_secs(10), || async {
            let info = inspector.find_job(id.as_str(), None).await.unwrap().unwrap();
            info.state == JobState::Cancelled
        })
        .await;
        assert!(settled, "{id} reads as cancelled");
    }
    // The delayed job came due meanwhile: it was removed, so it never ran.
    let report = running.stop().await;
    assert_eq!((report.cancelled, report.failed), (2, 0), "{report:?}");
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.cancelled, stats.retrying, stats.dead), (4, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_spends_no_attempt_and_logs_no_error() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let id = producer.enqueue(&Step { act: Act::SnoozeOnce }).await.unwrap();
    let running = common::RunningWorker::start(worker(&storage, &events));
    let snoozed = rx
        .event(id.as_str(), |k| matches!(k, EventKind::Snoozed { .. }))
        .await;
    assert_eq!(snoozed.attempt, 1);
    rx.event(id.as_str(), |k| *k == EventKind::Succeeded).await;
    let report = running.stop().await;
    assert_eq!(report.failed, 0);
    let done = inspector
        .find_job(id.as_str(), None)
        .await
        .unwrap()
        .unwrap()
        .finished
        .unwrap();
    assert_eq!(done.result_as::<u32>().unwrap().unwrap(), 1, "still attempt 1");
    assert_eq!(done.last_error, None, "no failure recorded");
    let stats = storage.stats(&storage.keys("jc_steps")).await.unwrap();
    assert_eq!((stats.failed, stats.completed), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_keeps_its_jobs_until_resumed() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let keys = storage.keys("jc_steps");
    assert!(matches!(
        inspector.pause("jc_steps").await.unwrap_err(),
        StorageError::UnknownQueue { .. }
    ));
    let first = producer.enqueue(&Step { act: Act::Succeed }).await.unwrap();
    assert_eq!(inspector.pause("jc_steps").await.unwrap(), Paused::Changed);
    assert_eq!(inspector.pause("jc_steps").await.unwrap(), Paused::Already);
    assert!(storage.stats(&keys).await.unwrap().paused);

    // Paused before the worker starts: it claims nothing. Nothing happens to wait for, so the
    // test gives it ten control polls (500 ms) to go wrong.
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let running = common::RunningWorker::start(worker(&storage, &events));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(storage.stats(&keys).await.unwrap().pending, 1, "still waiting");
    assert_eq!(inspector.resume("jc_steps").await.unwrap(), Paused::Changed);
    rx.event(first.as_str(), |k| *k == EventKind::Succeeded).await;

    // Paused while the worker runs: honoured within a control poll.
    inspector.pause("jc_steps").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = producer.enqueue(&Step { act: Act::Succeed }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = inspector.find_job(second.as_str(), None).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Pending, "a paused queue's new job waits");
    assert_eq!(inspector.resume("jc_steps").await.unwrap(), Paused::Changed);
    assert_eq!(inspector.resume("jc_steps").await.unwrap(), Paused::Already);
    rx.event(second.as_str(), |k| *k == EventKind::Succeeded).await;
    running.stop().await;
    assert!(!storage.stats(&keys).await.unwrap().paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_reach_the_apps_state() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let with = producer.enqueue(&Step { act: Act::UseState }).await.unwrap();
    let running = common::RunningWorker::start(worker(&storage, &events));
    rx.event(with.as_str(), |k| *k == EventKind::Succeeded).await;
    running.stop().await;
    let done = inspector
        .find_job(with.as_str(), None)
        .await
        .unwrap()
        .unwrap()
        .finished
        .unwrap();
    assert_eq!(
        done.result_as::<String>().unwrap().unwrap(),
        format!("hello, job {with}")
    );

    // A worker without the state: the job says what is missing.
    let without = producer.enqueue(&Step { act: Act::UseState }).await.unwrap();
    let w = Worker::new(storage.clone(), Registry::new().register::<Step>())
        .config(fast())
        .events(events.clone());
    let running = common::RunningWorker::start(w);
    rx.event(without.as_str(), |k| matches!(k, EventKind::Dead { .. }))
        .await;
    running.stop().await;
    let record = inspector
        .find_job(without.as_str(), None)
        .await
        .unwrap()
        .unwrap()
        .dead
        .unwrap();
    assert!(
        record.message.contains("the worker has no App state"),
        "{}",
        record.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_follows_a_running_job_to_the_next_worker() {
    let storage = common::storage(&test_support::redis_url()).await;
    let producer = Producer::new(storage.clone());
    let inspector = Inspector::new(storage.clone());
    let events = Events::new(1024);
    let mut rx = common::Seen::new(&events);
    let id = producer
        .enqueue_with(
            &Step {
                act: Act::WaitForCancel,
            },
            EnqueueOptions::new().id("follow-me"),
        )
        .await
        .unwrap();
    // The first worker never looks at its controls after starting: it does not see the cancel.
    let mut deaf = fast();
    deaf.control_poll = Duration::from_secs(3600);
    deaf.grace = Duration::from_millis(100);
    let first = common::RunningWorker::start(worker(&storage, &events).config(deaf));
    rx.event(id.id.as_str(), |k| *k == EventKind::Started).await;
    assert!(matches!(
        inspector.cancel("follow-me", None).await.unwrap(),
        Cancelled::Requested { .. }
    ));
    // It stops; the job goes back to its queue, unfinished, as another entry.
    let report = first.stop().await;
    assert_eq!(report.released, 1, "{report:?}");
    // The next worker runs it and stops it at once: the request names the job, not the entry.
    let second = common::RunningWorker::start(worker(&storage, &events));
    let end = rx
        .event("follow-me", |k| {
            matches!(
                k,
                EventKind::Cancelled | EventKind::Retried { .. } | EventKind::Dead { .. }
            )
        })
        .await;
    assert_eq!(end.kind, EventKind::Cancelled);
    second.stop().await;
    let info = inspector.find_job("follow-me", None).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Cancelled);
}
