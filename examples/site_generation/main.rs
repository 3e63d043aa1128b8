//! Site generation: one job per site reads the site from PostgreSQL, renders its pages and writes
//! them in one transaction, through an isolated pool (`IsolatedPg`) on the execution's own
//! runtime (`Isolation::Runtime`).
//!
//! ```text
//! cargo run --example site_generation -- --sites 50
//! cargo run --example site_generation -- --mode producer --sites 200   # seed + enqueue, exit
//! cargo run --example site_generation -- --mode worker                 # work until Ctrl-C
//! ```
//!
//! `DATABASE_URL` (default `postgres://root@127.0.0.1:5432/test`) and `REDIS_URL` (default
//! `redis://127.0.0.1:6379`). The tables live in their own schema, created with the embedded
//! diesel migrations of `examples/site_generation/migrations/`; an `all` run uses a fresh schema
//! and Redis prefix and removes both at the end (`--keep` keeps them), so runs never clash.
//!
//! `examples/site_generation_shared_pool.rs` runs the same workload with one process-wide pool,
//! to show what goes wrong without the isolation.

mod site;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use quern::{
    Backoff, ErrorChain, IsolatedPg, Isolation, Job, JobContext, JobError, JobOptions, PgConfig, Producer,
    RedisConfig, Registry, Storage, Worker,
};
use serde::{Deserialize, Serialize};
use site::{Args, Mode, QUEUE};

/// Regenerates every page of one site.
#[derive(Serialize, Deserialize)]
struct GenerateSite {
    site_id: i64,
}

impl Job for GenerateSite {
    const NAME: &'static str = "generate_site";
    type Resources = IsolatedPg;

    fn options() -> JobOptions {
        JobOptions::new()
            .queue(QUEUE)
            .max_attempts(5)
            .backoff(Backoff::exponential(
                Duration::from_millis(200),
                Duration::from_secs(5),
            ))
            .timeout(Duration::from_secs(60))
            // Rendering is CPU work: a runtime (and thread) of its own keeps it off the worker's.
            .isolation(Isolation::Runtime)
    }

    async fn run(self, _ctx: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        let mut conn = pg.get().await?;
        let pages = site::generate(&mut conn, self.site_id)
            .await
            .map_err(|e| quern::diesel::PgError::from(e).into_job_error())
            .map_err(|e| e.context(format!("generating site {}", self.site_id)))?;
        tracing::debug!(site_id = self.site_id, pages, "site generated");
        Ok(())
    }
}

/// Every connection of this job is named `quern:generate_site:<job id>`.
const APP_PREFIX: &str = "quern:generate_site:";

#[tokio::main]
async fn main() -> ExitCode {
    quern::cli::init_tracing();
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let schema = args.schema();
    site::check_schema(&schema)?;
    let prefix = args.prefix("quern-site-generation");
    let db_url = site::schema_url(&args.database_url, &schema);
    let redis = RedisConfig::new(&args.redis_url).prefix(&prefix);
    let storage = Storage::connect(redis.clone()).await.map_err(|e| {
        format!(
            "cannot reach Redis at {}: {}",
            redis.redacted_url(),
            ErrorChain::of(&e)
        )
    })?;
    let keys = storage.keys(QUEUE);

    if args.mode != Mode::Worker {
        site::migrate(&args.database_url, &schema).await?;
        let mut conn = site::connect(&db_url).await?;
        site::seed(&mut conn, args.sites, args.pages)
            .await
            .map_err(|e| format!("seeding {} sites in schema {schema}: {e}", args.sites))?;
        let jobs: Vec<GenerateSite> = (1..=args.sites).map(|site_id| GenerateSite { site_id }).collect();
        Producer::new(storage.clone())
            .enqueue_many(&jobs)
            .await
            .map_err(|e| format!("enqueueing: {}", ErrorChain::of(&e)))?;
        println!(
            "enqueued {} sites ({} pages each) on queue {QUEUE}, schema {schema}, prefix {prefix}",
            args.sites, args.pages
        );
        if args.mode == Mode::Producer {
            return Ok(ExitCode::SUCCESS);
        }
    }

    let worker = Worker::new(storage.clone(), Registry::new().register::<GenerateSite>())
        .configure(|c| c.concurrency = args.concurrency.max(1))
        // One connection per execution is all this job needs.
        .extension(PgConfig::new().database_url(&db_url).pool_size(1));
    if args.mode == Mode::Worker {
        println!("working queue {QUEUE} (schema {schema}, prefix {prefix}) until SIGINT/SIGTERM");
        let report = worker
            .run(quern::shutdown_signal())
            .await
            .map_err(|e| ErrorChain::of(&e).to_string())?;
        println!("worker stopped: {report:?}");
        return Ok(ExitCode::SUCCESS);
    }

    // --mode all: work until every site is settled, then report.
    let total = args.sites as u64;
    let (stats, elapsed, report) =
        site::run_until_settled(worker, &storage, &keys, total, Duration::from_secs(300)).await?;

    let mut conn = site::connect(&db_url).await?;
    let pages = site::pages_written(&mut conn)
        .await
        .map_err(|e| format!("counting pages: {e}"))?;
    let left = site::connections_left(&mut conn, APP_PREFIX, Duration::from_secs(5))
        .await
        .map_err(|e| format!("reading pg_stat_activity: {e}"))?;
    println!("sites done: {} / {total}", stats.completed);
    println!("pages written: {pages}");
    println!("failures: {} failed attempts, {} dead", report.failed, stats.dead);
    println!(
        "elapsed: {:.1} ms ({:.1} sites/s)",
        elapsed.as_secs_f64() * 1e3,
        stats.completed as f64 / elapsed.as_secs_f64()
    );
    println!("connections left: {left}");

    if !args.keep {
        site::drop_schema(&mut conn, &schema)
            .await
            .map_err(|e| format!("dropping schema {schema}: {e}"))?;
        storage
            .delete_queue(&keys)
            .await
            .map_err(|e| format!("deleting the demo queue: {}", ErrorChain::of(&e)))?;
    }
    let expected_pages = args.sites * i64::from(args.pages);
    Ok(
        if stats.completed == total && pages == expected_pages && left == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
