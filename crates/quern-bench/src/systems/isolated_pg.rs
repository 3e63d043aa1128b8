//! `isolated_pg`: what one execution pays for `IsolatedPg`, against a bare connect and a warm
//! shared pool, on the same PostgreSQL (`DATABASE_URL`, default `postgres://root@127.0.0.1:5432/test`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use quern_core::{
    Extensions, Job, JobContext, JobError, JobId, Outcome, Resource, ResourceContext, Shutdown,
};
use quern_diesel::{IsolatedPg, PgConfig};
use quern_redis::{Producer, RedisConfig, Storage};
use quern_worker::{Registry, Worker};

use super::Env;
use crate::model::{Measurement, median};

/// Executions measured per figure.
const N: usize = 200;

/// Acquire + release pairs in one warm tight loop.
const WARM: usize = 10_000;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

async fn select_one(conn: &mut AsyncPgConnection) -> Result<()> {
    diesel::sql_query("SELECT 1")
        .execute(conn)
        .await
        .context("SELECT 1")?;
    Ok(())
}

fn ms(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    median(samples)
}

/// Mean microseconds of one acquire + release of `R`, over [`WARM`] of them in a tight loop
/// (after as many unmeasured ones), so caches and branch predictors are warm: the floor of what an
/// unused resource costs, where the interleaved figure is closer to a worker's.
async fn warm_us<R: Resource>(ctx: &JobContext, ext: &Extensions) -> Result<f64> {
    let mut start = Instant::now();
    for i in 0..2 * WARM {
        if i == WARM {
            start = Instant::now();
        }
        let r = R::acquire(ResourceContext::new(ctx, ext))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(&r);
        r.release(Outcome::Succeeded).await;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / WARM as f64)
}

/// Per-execution medians, in one run: IsolatedPg used, bare establish, warm shared pool, and
/// IsolatedPg unused against no resource at all (interleaved with the others, and in a warm tight
/// loop).
pub async fn measure(env: &Env) -> Result<Vec<Measurement>> {
    let url = database_url();
    let mut ext = Extensions::new();
    ext.insert(PgConfig::new().database_url(url.clone()));
    let pool = Pool::builder(AsyncDieselConnectionManager::<AsyncPgConnection>::new(
        url.clone(),
    ))
    .max_size(4)
    .build()
    .context("shared pool")?;
    select_one(&mut *pool.get().await.context("warming the shared pool")?).await?;

    let (mut isolated, mut bare, mut shared, mut unused, mut none) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Alternate the variants so drift hits them alike.
    for i in 0..N {
        let ctx = JobContext::new(JobId::new(), "bench_pg", "bench", 1);

        let t = Instant::now();
        let pg = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        select_one(&mut *pg.get().await?).await?;
        pg.release(Outcome::Succeeded).await;
        isolated.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let mut conn = AsyncPgConnection::establish(&url).await.context("establish")?;
        select_one(&mut conn).await?;
        drop(conn);
        bare.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        select_one(&mut *pool.get().await.context("shared pool checkout")?).await?;
        shared.push(t.elapsed().as_secs_f64() * 1e3);

        if i % 2 == 0 {
            let t = Instant::now();
            let pg = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            pg.release(Outcome::Succeeded).await;
            unused.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            <() as Resource>::acquire(ResourceContext::new(&ctx, &ext))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ().release(Outcome::Succeeded).await;
            none.push(t.elapsed().as_secs_f64() * 1e6);
        }
        // Let closed connections leave the server before the next round.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let ctx = JobContext::new(JobId::new(), "bench_pg", "bench", 1);
    let unused_warm = warm_us::<IsolatedPg>(&ctx, &ext).await?;
    let none_warm = warm_us::<()>(&ctx, &ext).await?;
    let (iso, est) = (ms(&mut isolated), ms(&mut bare));
    // Where it counts: the same jobs through a worker, with and without an unused IsolatedPg,
    // alternated.
    let (mut with_pg, mut without) = (Vec::new(), Vec::new());
    for round in 0..3 {
        with_pg.push(through_worker::<PgNoop>(env, &url, round).await?);
        without.push(through_worker::<Noop>(env, &url, round).await?);
    }
    let (with_pg, without) = (ms(&mut with_pg), ms(&mut without));
    Ok(vec![
        Measurement::new("isolated_ms", "ms", iso).with_note(format!(
            "{N} executions: acquire, connect, SELECT 1, close; {:.2}x a bare establish",
            iso / est
        )),
        Measurement::new("bare_establish_ms", "ms", est).with_note("AsyncPgConnection::establish + SELECT 1"),
        Measurement::new("shared_pool_ms", "ms", ms(&mut shared))
            .with_note("warm deadpool checkout + SELECT 1"),
        Measurement::new("unused_isolated_us", "us", ms(&mut unused))
            .with_note("acquire + release, no query; interleaved with real connects (cold caches)"),
        Measurement::new("no_resource_us", "us", ms(&mut none))
            .with_note("Resources = (); interleaved with real connects (cold caches)"),
        Measurement::new("unused_isolated_warm_us", "us", unused_warm).with_note(format!(
            "acquire + release, no query; mean of {WARM} in a warm tight loop"
        )),
        Measurement::new("no_resource_warm_us", "us", none_warm)
            .with_note(format!("Resources = (); mean of {WARM} in a warm tight loop")),
        Measurement::new("worker_unused_isolated_jobs_per_s", "jobs/s", with_pg).with_note(format!(
            "{WORKER_JOBS} jobs through one worker, each declaring an IsolatedPg it never uses; {:.3}x the same jobs without",
            with_pg / without
        )),
        Measurement::new("worker_no_resource_jobs_per_s", "jobs/s", without)
            .with_note(format!("{WORKER_JOBS} jobs through one worker, Resources = ()")),
    ])
}

/// Jobs per worker-level round.
const WORKER_JOBS: u64 = 50_000;

/// Jobs handled by the current worker-level round.
static HANDLED: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Serialize, serde::Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    const NAME: &'static str = "noop";
    type Resources = ();
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        HANDLED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PgNoop {
    n: u64,
}

impl Job for PgNoop {
    const NAME: &'static str = "pg_noop";
    type Resources = IsolatedPg;
    async fn run(self, _: &JobContext, _: &mut IsolatedPg) -> Result<(), JobError> {
        HANDLED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Enqueues [`WORKER_JOBS`] of `J` on a queue of this run, then times one worker (concurrency
/// 256) running them all: jobs/s.
async fn through_worker<J: Job + From<u64>>(env: &Env, url: &str, round: usize) -> Result<f64> {
    let storage = Storage::connect(RedisConfig::new(&env.redis_url).prefix(format!(
        "{}-pg{round}-{}",
        env.queue(),
        J::NAME
    )))
    .await?;
    let producer = Producer::new(storage.clone());
    let jobs: Vec<J> = (0..WORKER_JOBS).map(J::from).collect();
    producer.enqueue_many(&jobs).await?;
    HANDLED.store(0, Ordering::Relaxed);
    let stop = Shutdown::new();
    let worker = Worker::new(storage.clone(), Registry::new().register::<J>())
        .extension(PgConfig::new().database_url(url))
        .configure(|c| c.concurrency = 256);
    let s = stop.clone();
    let t = Instant::now();
    let handle = tokio::spawn(worker.run(async move { s.wait().await }));
    let deadline = t + Duration::from_secs(120);
    while AtomicU64::load(&HANDLED, Ordering::Relaxed) < WORKER_JOBS {
        anyhow::ensure!(Instant::now() < deadline, "worker-level round timed out");
        tokio::time::sleep(Duration::from_micros(250)).await;
    }
    let rate = WORKER_JOBS as f64 / t.elapsed().as_secs_f64();
    stop.trigger();
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .context("worker did not stop")??
        .context("worker failed")?;
    storage.delete_queue(&storage.keys(&J::options().queue)).await?;
    Ok(rate)
}

impl From<u64> for Noop {
    fn from(n: u64) -> Self {
        Noop { n }
    }
}

impl From<u64> for PgNoop {
    fn from(n: u64) -> Self {
        PgNoop { n }
    }
}
