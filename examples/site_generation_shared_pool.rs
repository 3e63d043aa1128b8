//! The site_generation workload done the naive way, to show the bug `IsolatedPg` exists for: one
//! process-wide diesel-async pool (a `static OnceLock<Pool>`, built by the first job) used by
//! jobs that each run on their own runtime (`Isolation::Runtime`).
//!
//! ```text
//! cargo run --example site_generation_shared_pool -- --sites 50
//! ```
//!
//! tokio-postgres drives each connection from a task spawned on the runtime that opened it. When
//! that execution's runtime is dropped, the connection's driver dies with it: the next job that
//! checks the connection out either gets `connection closed`, or deadpool's pre-ping fails and it
//! silently opens a new connection. The summary counts both. Compare with `site_generation`.

#[path = "site_generation/site.rs"]
mod site;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use clap::Parser;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use quern::{
    Backoff, ErrorChain, Isolation, Job, JobContext, JobError, JobOptions, Producer, RedisConfig, Registry,
    Storage, Worker,
};
use serde::{Deserialize, Serialize};
use site::{Args, QUEUE};

/// The URL the global pool connects to; set by `main` before any job runs.
static URL: OnceLock<String> = OnceLock::new();
/// The anti-pattern: one pool for the process, built on whichever runtime runs the first job.
static POOL: OnceLock<Pool<AsyncPgConnection>> = OnceLock::new();
/// Connections the pool opened: with reuse this stays at the pool size; here it does not.
static CONNECTS: AtomicU64 = AtomicU64::new(0);
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());
const POOL_SIZE: usize = 4;
const APP_NAME: &str = "quern-shared-pool-demo";

fn pool() -> &'static Pool<AsyncPgConnection> {
    POOL.get_or_init(|| {
        let url = URL.get().expect("main sets the URL");
        let url = format!("{url}&application_name={APP_NAME}");
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = Box::new(|url| {
            Box::pin(async move {
                CONNECTS.fetch_add(1, Ordering::Relaxed);
                AsyncPgConnection::establish(url).await
            })
        });
        Pool::builder(AsyncDieselConnectionManager::new_with_config(url, config))
            .max_size(POOL_SIZE)
            .build()
            .expect("build the pool")
    })
}

#[derive(Serialize, Deserialize)]
struct GenerateSiteShared {
    site_id: i64,
}

impl Job for GenerateSiteShared {
    const NAME: &'static str = "generate_site_shared_pool";
    type Resources = ();

    fn options() -> JobOptions {
        JobOptions::new()
            .queue(QUEUE)
            // One attempt, so every failure is visible in the summary instead of retried away.
            .max_attempts(1)
            .backoff(Backoff::Fixed(Duration::from_millis(100)))
            // A connection whose driver sits on an idle runtime hangs: bound it.
            .timeout(Duration::from_secs(5))
            .isolation(Isolation::Runtime)
    }

    async fn run(self, _ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        let result = async {
            let mut conn = pool().get().await.map_err(|e| format!("pool.get(): {e}"))?;
            site::generate(&mut conn, self.site_id)
                .await
                .map_err(|e| format!("query: {e}"))
        }
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                ERRORS.lock().unwrap().push(e.clone());
                Err(JobError::msg(e))
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    quern::cli::init_tracing();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let schema = args.schema();
    site::check_schema(&schema)?;
    let prefix = args.prefix("quern-site-generation-shared");
    let db_url = site::schema_url(&args.database_url, &schema);
    URL.set(db_url.clone()).expect("set once");
    let redis = RedisConfig::new(&args.redis_url).prefix(&prefix);
    let storage = Storage::connect(redis.clone()).await.map_err(|e| {
        format!(
            "cannot reach Redis at {}: {}",
            redis.redacted_url(),
            ErrorChain::of(&e)
        )
    })?;
    let keys = storage.keys(QUEUE);
    site::migrate(&args.database_url, &schema).await?;
    let mut conn = site::connect(&db_url).await?;
    site::seed(&mut conn, args.sites, args.pages)
        .await
        .map_err(|e| format!("seeding: {e}"))?;
    let jobs: Vec<_> = (1..=args.sites)
        .map(|site_id| GenerateSiteShared { site_id })
        .collect();
    Producer::new(storage.clone())
        .enqueue_many(&jobs)
        .await
        .map_err(|e| format!("enqueueing: {}", ErrorChain::of(&e)))?;

    let worker = Worker::new(storage.clone(), Registry::new().register::<GenerateSiteShared>())
        .configure(|c| c.concurrency = args.concurrency.max(1));
    let total = args.sites as u64;
    let (stats, elapsed, _report) =
        site::run_until_settled(worker, &storage, &keys, total, Duration::from_secs(600)).await?;

    let errors = ERRORS.lock().unwrap().clone();
    let hung = stats.dead.saturating_sub(errors.len() as u64);
    let mut kinds: Vec<String> = errors.iter().map(|e| e.chars().take(80).collect()).collect();
    kinds.sort();
    kinds.dedup();
    let connects = CONNECTS.load(Ordering::Relaxed);
    if let Some(pool) = POOL.get() {
        pool.close();
    }
    let pages = site::pages_written(&mut conn).await.map_err(|e| e.to_string())?;
    let left = site::connections_left(&mut conn, APP_NAME, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    println!("one global pool (max {POOL_SIZE}) shared by per-execution runtimes:");
    println!("sites done: {} / {total}", stats.completed);
    println!("pages written: {pages}");
    println!(
        "failures: {} ({} errors, {hung} timed out / hung)",
        stats.dead,
        errors.len()
    );
    println!(
        "reconnects: {connects} connections opened for {total} jobs (a working pool of {POOL_SIZE} opens at most {POOL_SIZE})"
    );
    println!("elapsed: {:.1} ms", elapsed.as_secs_f64() * 1e3);
    println!("connections left: {left}");
    for kind in kinds {
        println!("  error seen: {kind}");
    }
    if !args.keep {
        site::drop_schema(&mut conn, &schema)
            .await
            .map_err(|e| e.to_string())?;
        storage
            .delete_queue(&keys)
            .await
            .map_err(|e| ErrorChain::of(&e).to_string())?;
    }
    Ok(())
}
