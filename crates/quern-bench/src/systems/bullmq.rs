//! `bullmq-official`: the Rust port of BullMQ 1.4, through `Queue` and `Worker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bullmq::options::RedisConnectionOptions;
use bullmq::types::RemoveOnFinish;
use bullmq::{BulkJob, Job, Queue, QueueOptions, Worker, WorkerOptions};

use super::{Arrival, Env, SUSTAINED_WINDOW, System, drive_pickup};
use crate::model::{BenchJob, SystemName, Workload};
use crate::util;

/// Queue name inside the run's own prefix.
const QUEUE: &str = "q";
/// Jobs per `add_bulk` call.
const BULK_CHUNK: usize = 1_000;

/// A BullMQ queue and, while a workload runs, a worker.
pub struct BullMq {
    env: Env,
    queue: Queue,
    worker: Option<Worker>,
}

impl BullMq {
    fn connection(&self) -> RedisConnectionOptions {
        RedisConnectionOptions::new().url(self.env.redis_url.clone())
    }

    async fn start_worker(
        &mut self,
        concurrency: usize,
        done: Arc<AtomicU64>,
        tx: Option<tokio::sync::mpsc::UnboundedSender<Arrival>>,
    ) -> Result<()> {
        let opts = WorkerOptions {
            connection: self.connection(),
            prefix: self.env.queue(),
            concurrency,
            remove_on_complete: Some(RemoveOnFinish::Bool(true)),
            ..WorkerOptions::default()
        };
        let worker = Worker::with_options(
            QUEUE,
            move |job: Job, _token| {
                let at = Instant::now();
                let parsed: Result<BenchJob, _> = serde_json::from_value(job.data().clone());
                let done = done.clone();
                let tx = tx.clone();
                async move {
                    let job = parsed?;
                    if let Some(tx) = &tx {
                        let _ = tx.send((job.n, at));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok(serde_json::Value::Null)
                }
            },
            opts,
        )
        .await?;
        self.worker = Some(worker);
        Ok(())
    }

    async fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), w.close(5_000)).await;
        }
    }

    async fn add_chunked(&self, from: u64, n: usize) -> Result<()> {
        let mut i = from;
        let end = from + n as u64;
        while i < end {
            let to = (i + BULK_CHUNK as u64).min(end);
            let jobs: Vec<BulkJob> = (i..to).map(|n| BulkJob::new("bench", BenchJob { n })).collect();
            self.queue.add_bulk(jobs).await?;
            i = to;
        }
        Ok(())
    }
}

impl System for BullMq {
    const NAME: SystemName = SystemName::BullmqOfficial;

    async fn connect(env: &Env) -> Result<Self> {
        let opts = QueueOptions::default()
            .connection(RedisConnectionOptions::new().url(env.redis_url.clone()))
            .prefix(env.queue());
        let queue = Queue::with_options(QUEUE, opts).await?;
        Ok(BullMq {
            env: env.clone(),
            queue,
            worker: None,
        })
    }

    async fn enqueue_one(&mut self, i: u64) -> Result<()> {
        self.queue.add("bench", BenchJob { n: i }).await?;
        Ok(())
    }

    async fn enqueue_bulk(&mut self, n: usize) -> Result<()> {
        self.add_chunked(0, n).await
    }

    async fn process(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()> {
        let done = Arc::new(AtomicU64::new(0));
        self.start_worker(concurrency, done.clone(), None).await?;
        let r = util::wait_until(bound, "bullmq worker", || {
            done.load(Ordering::Relaxed) >= n as u64
        })
        .await;
        self.stop_worker().await;
        r
    }

    async fn pickup_latency(&mut self, n: usize, bound: Duration) -> Result<Vec<Duration>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.start_worker(1, Arc::new(AtomicU64::new(0)), Some(tx))
            .await?;
        let queue = &self.queue;
        let r = drive_pickup(n, bound, rx, |i| async move {
            queue.add("bench", BenchJob { n: i }).await?;
            Ok(())
        })
        .await;
        self.stop_worker().await;
        r
    }

    async fn sustained(&mut self, secs: u64, concurrency: usize) -> Result<u64> {
        let done = Arc::new(AtomicU64::new(0));
        self.start_worker(concurrency, done.clone(), None).await?;
        let stop_at = Instant::now() + Duration::from_secs(secs);
        let mut sent = 0u64;
        while Instant::now() < stop_at {
            if sent - done.load(Ordering::Relaxed) >= SUSTAINED_WINDOW {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            let jobs: Vec<BulkJob> = (sent..sent + 100)
                .map(|n| BulkJob::new("bench", BenchJob { n }))
                .collect();
            self.queue.add_bulk(jobs).await?;
            sent += 100;
        }
        let handled = done.load(Ordering::Relaxed);
        self.stop_worker().await;
        Ok(handled)
    }

    fn note(workload: Workload) -> String {
        match workload {
            Workload::EnqueueBulk | Workload::RedisMemory => format!("add_bulk x{BULK_CHUNK}"),
            Workload::Process => "concurrency 256, removeOnComplete".into(),
            Workload::Sustained => {
                format!("producer add_bulk x100, window {SUSTAINED_WINDOW}, concurrency 256")
            }
            _ => String::new(),
        }
    }

    async fn cleanup(&mut self) -> Result<()> {
        self.stop_worker().await;
        self.queue.close().await;
        let mut con = util::connect(&self.env.redis_url).await?;
        for p in self.env.key_patterns() {
            util::delete_matching(&mut con, &p).await?;
        }
        Ok(())
    }
}
