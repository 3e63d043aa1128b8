//! `apalis-redis`: apalis 1.0 with apalis-redis 1.0, through `TaskSink` and `WorkerBuilder`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use apalis::prelude::*;
use apalis_redis::{Config, ConnectionManager, RedisStorage};

use super::{Arrival, Env, SUSTAINED_WINDOW, System, drive_pickup};
use crate::model::{BenchJob, SystemName, Workload};
use crate::util;

/// apalis-redis fetch script `unpack`s every due job id at once; Lua's stack limit (~8,000) kills
/// the worker past that, so `process` is capped just below it.
pub const PROCESS_CAP: usize = 7_990;
/// How often an idle apalis worker polls (its default wake-up is the 30 s heartbeat).
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Bulk pushes go through `push_bulk` in chunks of this size (one Lua call each).
const BULK_CHUNK: usize = 1_000;

/// apalis-redis storage and worker.
pub struct Apalis {
    env: Env,
    storage: RedisStorage<BenchJob>,
}

/// The best configuration we found: batches of 256, no pubsub events nobody listens to, no results kept.
fn config(env: &Env) -> Config {
    Config::default()
        .queue(env.queue())
        .batch_size(256)
        .emit_events(false)
        .persist_results(false)
}

impl Apalis {
    /// Starts a worker whose handler reports each job on `tx` and counts it in `done`.
    fn spawn_worker(
        &self,
        concurrency: usize,
        done: Arc<AtomicU64>,
        tx: Option<tokio::sync::mpsc::UnboundedSender<Arrival>>,
    ) -> tokio::task::JoinHandle<Result<(), WorkerError>> {
        let backend = self.storage.clone().poll_with_interval(POLL_INTERVAL);
        let name = format!("{}-worker", self.env.queue());
        let worker = WorkerBuilder::new(name)
            .backend(backend)
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .build(move |job: BenchJob| {
                let at = Instant::now();
                if let Some(tx) = &tx {
                    let _ = tx.send((job.n, at));
                }
                done.fetch_add(1, Ordering::Relaxed);
                async move {}
            });
        tokio::spawn(worker.run())
    }

    async fn push_chunked(&mut self, from: u64, n: usize) -> Result<()> {
        let mut i = from;
        let end = from + n as u64;
        while i < end {
            let to = (i + BULK_CHUNK as u64).min(end);
            let jobs: Vec<BenchJob> = (i..to).map(|n| BenchJob { n }).collect();
            self.storage
                .push_bulk(jobs)
                .await
                .map_err(|e| anyhow!("push_bulk: {e:?}"))?;
            i = to;
        }
        Ok(())
    }
}

/// Waits for `done >= n`, failing early if the worker task ended (apalis dies on some errors).
async fn wait_done(
    done: &AtomicU64,
    n: u64,
    worker: &mut tokio::task::JoinHandle<Result<(), WorkerError>>,
    bound: Duration,
) -> Result<()> {
    let deadline = Instant::now() + bound;
    while done.load(Ordering::Relaxed) < n {
        if worker.is_finished() {
            let r = worker.await;
            anyhow::bail!(
                "worker stopped after {} of {n} jobs: {r:?}",
                done.load(Ordering::Relaxed)
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {bound:?}: {} of {n} processed",
                done.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

impl System for Apalis {
    const NAME: SystemName = SystemName::ApalisRedis;

    async fn connect(env: &Env) -> Result<Self> {
        let conn: ConnectionManager = apalis_redis::connect(env.redis_url.as_str()).await?;
        let config = config(env);
        Ok(Apalis {
            env: env.clone(),
            storage: RedisStorage::new(conn).with_config(config),
        })
    }

    async fn enqueue_one(&mut self, i: u64) -> Result<()> {
        self.storage
            .push(BenchJob { n: i })
            .await
            .map_err(|e| anyhow!("push: {e:?}"))
    }

    async fn enqueue_bulk(&mut self, n: usize) -> Result<()> {
        self.push_chunked(0, n).await
    }

    async fn process(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()> {
        let done = Arc::new(AtomicU64::new(0));
        let mut worker = self.spawn_worker(concurrency, done.clone(), None);
        let r = wait_done(&done, n as u64, &mut worker, bound).await;
        worker.abort();
        r
    }

    async fn pickup_latency(&mut self, n: usize, bound: Duration) -> Result<Vec<Duration>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let worker = self.spawn_worker(1, Arc::new(AtomicU64::new(0)), Some(tx));
        let storage = self.storage.clone();
        let r = drive_pickup(n, bound, rx, |i| {
            let mut storage = storage.clone();
            async move {
                storage
                    .push(BenchJob { n: i })
                    .await
                    .map_err(|e| anyhow!("push: {e:?}"))
            }
        })
        .await;
        worker.abort();
        r
    }

    async fn sustained(&mut self, secs: u64, concurrency: usize) -> Result<u64> {
        let done = Arc::new(AtomicU64::new(0));
        let mut worker = self.spawn_worker(concurrency, done.clone(), None);
        let stop_at = Instant::now() + Duration::from_secs(secs);
        let mut sent = 0u64;
        while Instant::now() < stop_at {
            if worker.is_finished() {
                let r = (&mut worker).await;
                anyhow::bail!(
                    "worker stopped after {} jobs: {r:?}",
                    done.load(Ordering::Relaxed)
                );
            }
            if sent - done.load(Ordering::Relaxed) >= SUSTAINED_WINDOW {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            let jobs: Vec<BenchJob> = (sent..sent + 100).map(|n| BenchJob { n }).collect();
            self.storage
                .push_bulk(jobs)
                .await
                .map_err(|e| anyhow!("push_bulk: {e:?}"))?;
            sent += 100;
        }
        let handled = done.load(Ordering::Relaxed);
        worker.abort();
        Ok(handled)
    }

    fn note(workload: Workload) -> String {
        match workload {
            Workload::EnqueueBulk | Workload::RedisMemory => format!("push_bulk x{BULK_CHUNK}"),
            Workload::Process => format!(
                "capped: worker dies at ~8,000 due at once; batch 256, concurrency 256 + parallelize, poll {POLL_INTERVAL:?}; time includes worker start"
            ),
            Workload::PickupLatency => {
                format!("poll_with_interval {POLL_INTERVAL:?} (default: 30 s heartbeat)")
            }
            Workload::Sustained => format!("producer push_bulk x100, window {SUSTAINED_WINDOW}"),
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
