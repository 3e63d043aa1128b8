//! `chasquimq`: chasquimq 1.3 `Producer` / `Consumer`. It needs Redis >= 8.6 (XACKDEL, XADD IDMP),
//! so on an older server it is skipped before connecting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use chasquimq::{Consumer, ConsumerConfig, Producer, ProducerConfig};
use tokio_util::sync::CancellationToken;

use super::{Arrival, Env, SUSTAINED_WINDOW, System, drive_pickup};
use crate::model::{BenchJob, SystemName, Workload};
use crate::util;

/// Jobs per `add_bulk` call.
const BULK_CHUNK: usize = 1_000;

/// A chasquimq producer and, while a workload runs, a consumer.
pub struct Chasquimq {
    env: Env,
    producer: Producer<BenchJob>,
    consumer: Option<(CancellationToken, tokio::task::JoinHandle<chasquimq::Result<()>>)>,
}

impl Chasquimq {
    fn start_consumer(
        &mut self,
        concurrency: usize,
        done: Arc<AtomicU64>,
        tx: Option<tokio::sync::mpsc::UnboundedSender<Arrival>>,
    ) {
        let cfg = ConsumerConfig {
            queue_name: self.env.queue(),
            concurrency,
            ..Default::default()
        };
        let consumer = Consumer::<BenchJob>::new(self.env.redis_url.clone(), cfg);
        let token = CancellationToken::new();
        let handle = tokio::spawn(consumer.run(
            move |job: chasquimq::Job<BenchJob>| {
                let at = Instant::now();
                if let Some(tx) = &tx {
                    let _ = tx.send((job.payload.n, at));
                }
                done.fetch_add(1, Ordering::Relaxed);
                async move { Ok(bytes::Bytes::new()) }
            },
            token.clone(),
        ));
        self.consumer = Some((token, handle));
    }

    async fn stop_consumer(&mut self) {
        if let Some((token, handle)) = self.consumer.take() {
            token.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    async fn add_chunked(&self, from: u64, n: usize) -> Result<()> {
        let mut i = from;
        let end = from + n as u64;
        while i < end {
            let to = (i + BULK_CHUNK as u64).min(end);
            self.producer
                .add_bulk((i..to).map(|n| BenchJob { n }).collect())
                .await?;
            i = to;
        }
        Ok(())
    }
}

impl System for Chasquimq {
    const NAME: SystemName = SystemName::Chasquimq;

    async fn unsupported(env: &Env, _workload: Workload) -> Option<String> {
        match util::redis_version(&env.redis_url).await {
            Ok(v) if v >= (8, 6, 0) => None,
            Ok((a, b, c)) => Some(format!("skipped: needs Redis >= 8.6 (server is {a}.{b}.{c})")),
            Err(e) => Some(format!("skipped: cannot read the Redis version: {e:#}")),
        }
    }

    async fn connect(env: &Env) -> Result<Self> {
        let cfg = ProducerConfig {
            queue_name: env.queue(),
            ..Default::default()
        };
        let producer = Producer::<BenchJob>::connect(&env.redis_url, cfg).await?;
        Ok(Chasquimq {
            env: env.clone(),
            producer,
            consumer: None,
        })
    }

    async fn enqueue_one(&mut self, i: u64) -> Result<()> {
        self.producer.add(BenchJob { n: i }).await?;
        Ok(())
    }

    async fn enqueue_bulk(&mut self, n: usize) -> Result<()> {
        self.add_chunked(0, n).await
    }

    async fn process(&mut self, n: usize, concurrency: usize, bound: Duration) -> Result<()> {
        let done = Arc::new(AtomicU64::new(0));
        self.start_consumer(concurrency, done.clone(), None);
        let r = util::wait_until(bound, "chasquimq consumer", || {
            done.load(Ordering::Relaxed) >= n as u64
        })
        .await;
        self.stop_consumer().await;
        r
    }

    async fn pickup_latency(&mut self, n: usize, bound: Duration) -> Result<Vec<Duration>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.start_consumer(1, Arc::new(AtomicU64::new(0)), Some(tx));
        let producer = &self.producer;
        let r = drive_pickup(n, bound, rx, |i| async move {
            producer.add(BenchJob { n: i }).await?;
            Ok(())
        })
        .await;
        self.stop_consumer().await;
        r
    }

    async fn sustained(&mut self, secs: u64, concurrency: usize) -> Result<u64> {
        let done = Arc::new(AtomicU64::new(0));
        self.start_consumer(concurrency, done.clone(), None);
        let stop_at = Instant::now() + Duration::from_secs(secs);
        let mut sent = 0u64;
        while Instant::now() < stop_at {
            if sent - done.load(Ordering::Relaxed) >= SUSTAINED_WINDOW {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            self.producer
                .add_bulk((sent..sent + 100).map(|n| BenchJob { n }).collect())
                .await?;
            sent += 100;
        }
        let handled = done.load(Ordering::Relaxed);
        self.stop_consumer().await;
        Ok(handled)
    }

    async fn cleanup(&mut self) -> Result<()> {
        self.stop_consumer().await;
        let _ = self.producer.shutdown().await;
        let mut con = util::connect(&self.env.redis_url).await?;
        for p in self.env.key_patterns() {
            util::delete_matching(&mut con, &p).await?;
        }
        Ok(())
    }
}
