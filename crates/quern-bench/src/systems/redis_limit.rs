//! `redis-limit`: raw redis-rs on Redis Streams with no framework, the physical limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;

use super::{Arrival, Env, SUSTAINED_WINDOW, System, drive_pickup};
use crate::model::{BenchJob, SystemName, Workload};
use crate::util;

/// Raw streams: XADD, XREADGROUP COUNT 256 from 2 readers, XACK + XDEL pipelined per batch.
pub struct RedisLimit {
    env: Env,
    con: MultiplexedConnection,
    stream: String,
}

const GROUP: &str = "g";
const READ_COUNT: usize = 256;
const READERS: usize = 2;

/// An 82-byte-ish JSON envelope like the one a framework would store.
fn envelope(n: u64) -> String {
    format!(r#"{{"id":"01JAB{n:021}","job":"bench","queue":"q","attempt":0,"payload":{{"n":{n}}}}}"#)
}

/// Parses an envelope and returns its `n`.
fn parse(bytes: &[u8]) -> Result<u64> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        #[allow(dead_code)]
        id: &'a str,
        payload: BenchJob,
    }
    let e: Envelope<'_> = serde_json::from_slice(bytes).context("bad envelope")?;
    Ok(e.payload.n)
}

impl RedisLimit {
    async fn xadd_pipelined(&mut self, from: u64, n: usize) -> Result<()> {
        for chunk_start in (0..n as u64).step_by(1000) {
            let end = (chunk_start + 1000).min(n as u64);
            let mut p = redis::pipe();
            for i in chunk_start..end {
                p.cmd("XADD")
                    .arg(&self.stream)
                    .arg("*")
                    .arg("e")
                    .arg(envelope(from + i))
                    .ignore();
            }
            p.query_async::<()>(&mut self.con).await?;
        }
        Ok(())
    }

    async fn ensure_group(&mut self) -> Result<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.con)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads batches until `stop()` says so; each entry parsed, then XACK + XDEL in one pipeline.
async fn reader(
    mut con: MultiplexedConnection,
    stream: String,
    consumer: String,
    done: Arc<AtomicU64>,
    stop: impl Fn(u64) -> bool,
    block_ms: Option<u64>,
) -> Result<()> {
    loop {
        if stop(done.load(Ordering::Relaxed)) {
            return Ok(());
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&consumer)
            .arg("COUNT")
            .arg(READ_COUNT);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(&stream).arg(">");
        let reply: Option<StreamReadReply> = cmd.query_async(&mut con).await?;
        let ids: Vec<String> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                match e.map.get("e") {
                    Some(redis::Value::BulkString(b)) => parse(b)?,
                    _ => anyhow::bail!("entry {} has no envelope", e.id),
                };
                Ok(e.id)
            })
            .collect::<Result<_>>()?;
        if ids.is_empty() {
            if block_ms.is_none() {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            continue;
        }
        let mut p = redis::pipe();
        p.cmd("XACK").arg(&stream).arg(GROUP).arg(&ids).ignore();
        p.cmd("XDEL").arg(&stream).arg(&ids).ignore();
        p.query_async::<()>(&mut con).await?;
        done.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
}

impl System for RedisLimit {
    const NAME: SystemName = SystemName::RedisLimit;

    async fn connect(env: &Env) -> Result<Self> {
        let con = util::connect(&env.redis_url).await?;
        Ok(RedisLimit {
            env: env.clone(),
            con,
            stream: format!("{}:stream", env.queue()),
        })
    }

    async fn enqueue_one(&mut self, i: u64) -> Result<()> {
        let _: String = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("e")
            .arg(envelope(i))
            .query_async(&mut self.con)
            .await?;
        Ok(())
    }

    async fn enqueue_bulk(&mut self, n: usize) -> Result<()> {
        self.ensure_group().await?;
        self.xadd_pipelined(0, n).await
    }

    async fn process(&mut self, n: usize, _concurrency: usize, bound: Duration) -> Result<()> {
        let done = Arc::new(AtomicU64::new(0));
        let target = n as u64;
        let mut tasks = Vec::new();
        for r in 0..READERS {
            tasks.push(tokio::spawn(reader(
                self.con.clone(),
                self.stream.clone(),
                format!("c{r}"),
                done.clone(),
                move |d| d >= target,
                None,
            )));
        }
        let all = futures_util::future::try_join_all(tasks);
        match tokio::time::timeout(bound, all).await {
            Ok(res) => {
                for r in res? {
                    r?;
                }
                Ok(())
            }
            Err(_) => anyhow::bail!(
                "timed out after {bound:?}: {} of {n} processed",
                done.load(Ordering::Relaxed)
            ),
        }
    }

    async fn pickup_latency(&mut self, n: usize, bound: Duration) -> Result<Vec<Duration>> {
        self.ensure_group().await?;
        // A dedicated connection for the blocking read.
        let mut blocking = util::connect(&self.env.redis_url).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Arrival>();
        let stream = self.stream.clone();
        let worker = tokio::spawn(async move {
            loop {
                let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg("c0")
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut blocking)
                    .await?;
                let Some(reply) = reply else { continue };
                let at = Instant::now();
                let mut ids = Vec::new();
                for e in reply.keys.into_iter().flat_map(|k| k.ids) {
                    if let Some(redis::Value::BulkString(b)) = e.map.get("e") {
                        let _ = tx.send((parse(b)?, at));
                    }
                    ids.push(e.id);
                }
                let mut p = redis::pipe();
                p.cmd("XACK").arg(&stream).arg(GROUP).arg(&ids).ignore();
                p.cmd("XDEL").arg(&stream).arg(&ids).ignore();
                p.query_async::<()>(&mut blocking).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        });
        let mut con = self.con.clone();
        let stream = self.stream.clone();
        let res = drive_pickup(n, bound, rx, |i| {
            let mut con = con.clone();
            let stream = stream.clone();
            async move {
                let _: String = redis::cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("e")
                    .arg(envelope(i))
                    .query_async(&mut con)
                    .await?;
                Ok(())
            }
        })
        .await;
        worker.abort();
        let _ = &mut con;
        res
    }

    async fn sustained(&mut self, secs: u64, _concurrency: usize) -> Result<u64> {
        self.ensure_group().await?;
        let done = Arc::new(AtomicU64::new(0));
        let stop_at = Instant::now() + Duration::from_secs(secs);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..READERS {
            let stop = stop.clone();
            readers.push(tokio::spawn(reader(
                self.con.clone(),
                self.stream.clone(),
                format!("c{r}"),
                done.clone(),
                move |_| stop.load(Ordering::Relaxed),
                None,
            )));
        }
        // One producer: pipelines of 100 XADDs, at most SUSTAINED_WINDOW jobs outstanding.
        let mut sent = 0u64;
        let start_done = done.load(Ordering::Relaxed);
        while Instant::now() < stop_at {
            if sent - done.load(Ordering::Relaxed) >= SUSTAINED_WINDOW {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            let mut p = redis::pipe();
            for i in 0..100 {
                p.cmd("XADD")
                    .arg(&self.stream)
                    .arg("*")
                    .arg("e")
                    .arg(envelope(sent + i))
                    .ignore();
            }
            p.query_async::<()>(&mut self.con).await?;
            sent += 100;
        }
        let handled = done.load(Ordering::Relaxed) - start_done;
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            match tokio::time::timeout(Duration::from_secs(10), r).await {
                Ok(res) => res??,
                Err(_) => anyhow::bail!("reader did not stop"),
            }
        }
        Ok(handled)
    }

    fn note(workload: Workload) -> String {
        match workload {
            Workload::EnqueueBulk => "XADD pipelined x1000".into(),
            Workload::Process => "2 readers, XREADGROUP COUNT 256, XACK+XDEL per batch".into(),
            Workload::PickupLatency => "XREADGROUP BLOCK, dedicated connection".into(),
            Workload::Sustained => format!(
                "1 producer (pipelines of 100, likely the bottleneck), 2 readers, window {SUSTAINED_WINDOW}"
            ),
            _ => String::new(),
        }
    }

    async fn cleanup(&mut self) -> Result<()> {
        for p in self.env.key_patterns() {
            util::delete_matching(&mut self.con, &p).await?;
        }
        Ok(())
    }
}
