//! `quern`: Quern itself, through its public API (Producer, Worker, Registry).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use quern_core::{Job, JobContext, JobError, JobOptions, Shutdown};
use quern_redis::{Producer, RedisConfig, Storage};
use quern_worker::{Registry, Worker, WorkerReport};

use super::{Arrival, Env, SUSTAINED_WINDOW, System, drive_pickup};
use crate::model::{SystemName, Workload};
use crate::util;

/// Jobs handled by this process's worker.
static DONE: AtomicU64 = AtomicU64::new(0);
/// Where the handler reports arrivals during `pickup_latency`.
static ARRIVALS: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Arrival>>> = Mutex::new(None);

/// The benchmark job of `quern-result`: `{"n": u64}`, keeps `n` as its result for an hour.
#[derive(serde::Serialize, serde::Deserialize)]
struct BenchResult {
    n: u64,
}

impl Job for BenchResult {
    const NAME: &'static str = "bench_result";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new()
            .queue(QUEUE)
            .keep_result(Duration::from_secs(3600))
    }

    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        ctx.set_result(&self.n)?;
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The benchmark job: `{"n": u64}`, a no-op handler (the payload is decoded by Quern).
#[derive(serde::Serialize, serde::Deserialize)]
struct Bench {
    n: u64,
}

impl Job for Bench {
    const NAME: &'static str = "bench";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new().queue(QUEUE)
    }

    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        if let Some(tx) = ARRIVALS.lock().expect("poisoned").as_ref() {
            let _ = tx.send((self.n, Instant::now()));
        }
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

const QUEUE: &str = "bench";

/// A periodic run of `QUERN_BENCH_PERIODIC`: goes to a queue of its own that the bench worker
/// does not work.
#[derive(serde::Serialize, serde::Deserialize)]
struct BenchTick;

impl Job for BenchTick {
    const NAME: &'static str = "bench_tick";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new().queue("bench-periodic")
    }

    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

/// `QUERN_BENCH_PERIODIC=<n>` declares n schedules due every second on the worker (the
/// `process` with and without periodic schedules figure of `docs/BENCHMARKS.md`).
fn with_schedules(mut registry: Registry) -> Registry {
    let n: usize = std::env::var("QUERN_BENCH_PERIODIC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for i in 0..n {
        let every = quern_worker::periodic::Periodic::every(format!("bench-{i}"), Duration::from_secs(1));
        registry = registry
            .periodic(every.expect("a valid interval"), BenchTick)
            .expect("distinct names");
    }
    registry
}

/// Quern with its defaults: one worker, batches of up to 256, XACK per settled batch. `MODE` 1:
/// one empty middleware layer (tower's `Identity`) wraps every execution; `MODE` 2: every job
/// keeps its result (`quern-result`); `MODE` 3: every job enqueued one by one has a unique key
/// of its own (`quern-unique`).
pub struct Quern<const MODE: u8 = 0> {
    env: Env,
    storage: Storage,
    producer: Producer,
}

struct Running {
    stop: Shutdown,
    handle: tokio::task::JoinHandle<Result<WorkerReport, quern_worker::WorkerError>>,
}

impl<const MODE: u8> Quern<MODE> {
    fn start_worker(&self, concurrency: usize) -> Running {
        let registry = with_schedules(Registry::new().register::<Bench>().register::<BenchResult>());
        let mut worker =
            Worker::new(self.storage.clone(), registry).configure(|c| c.concurrency = concurrency.max(1));
        if MODE == 1 {
            worker = worker.layer(tower_layer::Identity::new());
        }
        let stop = Shutdown::new();
        let s = stop.clone();
        Running {
            stop,
            handle: tokio::spawn(worker.run(async move { s.wait().await })),
        }
    }

    async fn wait_done(target: u64, bound: Duration) -> Result<()> {
        let deadline = Instant::now() + bound;
        while DONE.load(Ordering::Relaxed) < target {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out: {} of {target} processed",
                    DONE.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_micros(250)).await;
        }
        Ok(())
    }
}

impl Running {
    async fn stop(self) -> Result<()> {
        self.stop.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("worker did not stop")??
            .context("worker failed")?;
        Ok(())
    }
}

impl<const MODE: u8> System for Quern<MODE> {
    const NAME: SystemName = match MODE {
        1 => SystemName::QuernLayer,
        2 => SystemName::QuernResult,
        3 => SystemName::QuernUnique,
        _ => SystemName::Quern,
    };
    const MEMORY_OF: &'static str = if MODE == 2 {
        "retained results (jobs completed, each keeping {\"n\":i} for 1 h; their stream entries trimmed)"
    } else {
        "pending jobs"
    };

    async fn fill_for_memory(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()> {
        self.enqueue_bulk(n).await?;
        if MODE == 2 {
            self.process(n, concurrency, bound).await?;
            // The worker trims completed entries as it goes and when it stops; `stats` trims
            // what is left, so only the results remain.
            let keys = self.storage.keys(QUEUE);
            self.storage.stats(&keys).await?;
        }
        Ok(())
    }

    async fn connect(env: &Env) -> Result<Self> {
        let storage = Storage::connect(RedisConfig::new(&env.redis_url).prefix(env.queue())).await?;
        Ok(Quern {
            env: env.clone(),
            producer: Producer::new(storage.clone()),
            storage,
        })
    }

    async fn enqueue_one(&mut self, i: u64) -> Result<()> {
        if MODE == 2 {
            self.producer.enqueue(&BenchResult { n: i }).await?;
        } else if MODE == 3 {
            let unique = quern_core::Unique::new(format!("bench:{i}"));
            self.producer
                .enqueue_with(&Bench { n: i }, quern_core::EnqueueOptions::new().unique(unique))
                .await?;
        } else {
            self.producer.enqueue(&Bench { n: i }).await?;
        }
        Ok(())
    }

    async fn enqueue_bulk(&mut self, n: usize) -> Result<()> {
        if MODE == 2 {
            let jobs: Vec<BenchResult> = (0..n as u64).map(|n| BenchResult { n }).collect();
            self.producer.enqueue_many(&jobs).await?;
        } else {
            let jobs: Vec<Bench> = (0..n as u64).map(|n| Bench { n }).collect();
            self.producer.enqueue_many(&jobs).await?;
        }
        Ok(())
    }

    async fn process(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()> {
        let start = DONE.load(Ordering::Relaxed);
        let worker = self.start_worker(concurrency);
        let res = Self::wait_done(start + n as u64, bound).await;
        worker.stop().await?;
        res
    }

    async fn pickup_latency(&mut self, n: usize, bound: Duration) -> Result<Vec<Duration>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Arrival>();
        *ARRIVALS.lock().expect("poisoned") = Some(tx);
        let worker = self.start_worker(64);
        let producer = self.producer.clone();
        let res = drive_pickup(n, bound, rx, |i| {
            let producer = producer.clone();
            async move {
                producer.enqueue(&Bench { n: i }).await?;
                Ok(())
            }
        })
        .await;
        *ARRIVALS.lock().expect("poisoned") = None;
        worker.stop().await?;
        res
    }

    async fn sustained(&mut self, secs: u64, concurrency: usize) -> Result<u64> {
        let worker = self.start_worker(concurrency);
        let start_done = DONE.load(Ordering::Relaxed);
        let stop_at = Instant::now() + Duration::from_secs(secs);
        let mut sent = 0u64;
        while Instant::now() < stop_at {
            if sent - (DONE.load(Ordering::Relaxed) - start_done) >= SUSTAINED_WINDOW {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            let jobs: Vec<Bench> = (sent..sent + 100).map(|n| Bench { n }).collect();
            self.producer.enqueue_many(&jobs).await?;
            sent += 100;
        }
        let handled = DONE.load(Ordering::Relaxed) - start_done;
        worker.stop().await?;
        Ok(handled)
    }

    fn note(workload: Workload) -> String {
        match workload {
            Workload::EnqueueBulk => "Producer::enqueue_many (pipelines of 1,000 XADD)".into(),
            Workload::Process => "one Worker, batches of up to 256, XACK per settled batch, completed entries trimmed in blocks".into(),
            Workload::Sustained => {
                format!("1 producer (enqueue_many of 100), 1 worker, window {SUSTAINED_WINDOW}")
            }
            _ => String::new(),
        }
    }

    async fn cleanup(&mut self) -> Result<()> {
        let mut con = util::connect(&self.env.redis_url).await?;
        for p in self.env.key_patterns() {
            util::delete_matching(&mut con, &p).await?;
        }
        Ok(())
    }
}
