//! Why the resource exists: one process-wide diesel-async pool used from a fresh runtime per job
//! loses its connections (errors, hangs or a reconnect on every checkout); `IsolatedPg` under the
//! same workload does not.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::ManagerConfig;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig};

const THREADS: usize = 4;
const PER_THREAD: usize = 50;
const JOBS: usize = THREADS * PER_THREAD;
/// A job that hangs (its connection's driver sits on a runtime nobody drives) counts as failed.
const PER_JOB: Duration = Duration::from_secs(2);

type Job = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>>>> + Send + Sync>;

#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    errors: Vec<String>,
    hung: usize,
}

/// 4 threads x 50 jobs, each job on a new current-thread runtime dropped right after it.
fn run_workload(job: Job) -> Tally {
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let job = Arc::clone(&job);
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                for _ in 0..PER_THREAD {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    match rt.block_on(async { tokio::time::timeout(PER_JOB, job()).await }) {
                        Ok(Ok(())) => tally.ok += 1,
                        Ok(Err(e)) => tally.errors.push(e),
                        Err(_) => tally.hung += 1,
                    }
                    drop(rt);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for t in threads {
        let t = t.join().unwrap();
        total.ok += t.ok;
        total.hung += t.hung;
        total.errors.extend(t.errors);
    }
    total
}

fn count_left(prefix: &str, limit: Duration) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { common::wait_gone(&common::admin().await, prefix, limit).await })
}

#[test]
fn a_shared_pool_breaks_across_runtimes_and_isolated_pg_does_not() {
    // --- One global pool, built once, as a naive worker would. ---
    let shared_app = common::unique("quern_shared");
    let url = common::url_with_param(&common::database_url(), "application_name", &shared_app);
    let connects = Arc::new(AtomicUsize::new(0));
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    let counter = Arc::clone(&connects);
    config.custom_setup = Box::new(move |url| {
        let counter = Arc::clone(&counter);
        Box::pin(async move {
            counter.fetch_add(1, Ordering::Relaxed);
            AsyncPgConnection::establish(url).await
        })
    });
    let pool: Pool<AsyncPgConnection> =
        Pool::builder(AsyncDieselConnectionManager::new_with_config(url, config))
            .max_size(THREADS)
            .build()
            .unwrap();

    let shared_pool = pool.clone();
    let shared = run_workload(Arc::new(move || {
        let pool = shared_pool.clone();
        Box::pin(async move {
            let mut conn = pool.get().await.map_err(|e| format!("get: {e}"))?;
            diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .map_err(|e| format!("query: {e}"))?;
            Ok(())
        })
    }));
    pool.close();
    let reconnects = AtomicUsize::load(&connects, Ordering::Relaxed);
    let shared_left = count_left(&shared_app, Duration::from_secs(5));
    let failed = shared.errors.len() + shared.hung;
    let mut kinds: Vec<&str> = shared.errors.iter().map(String::as_str).collect();
    kinds.sort_unstable();
    kinds.dedup();
    println!(
        "shared pool: {} / {JOBS} ok, {} errors, {} hung; {reconnects} connections opened for {JOBS} jobs; \
         {shared_left} left after close; errors seen: {kinds:?}",
        shared.ok,
        shared.errors.len(),
        shared.hung,
    );
    assert!(
        failed > 0 || reconnects >= JOBS / 2,
        "expected the shared pool to fail or to reconnect for most jobs: {failed} failed, {reconnects} connects"
    );

    // --- The same workload, each job with its own IsolatedPg. ---
    let name = common::unique("isolated");
    let opened = Arc::new(AtomicUsize::new(0));
    let opened_in_jobs = Arc::clone(&opened);
    let job_name = name.clone();
    let isolated = run_workload(Arc::new(move || {
        let (name, opened) = (job_name.clone(), Arc::clone(&opened_in_jobs));
        Box::pin(async move {
            let ctx = common::ctx(&name);
            let ext = common::ext(PgConfig::new().database_url(common::database_url()));
            let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
                .await
                .map_err(|e| e.to_string())?;
            let r = async {
                let mut conn = res.get().await?;
                diesel::sql_query("SELECT 1").execute(&mut conn).await?;
                Ok::<_, quern_diesel::PgError>(())
            }
            .await;
            opened.fetch_add(res.connections_opened() as usize, Ordering::Relaxed);
            res.release(if r.is_ok() {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            })
            .await;
            r.map_err(|e| e.to_string())
        })
    }));
    let isolated_left = count_left(&format!("quern:{name}:"), Duration::from_secs(5));
    println!(
        "IsolatedPg: {} / {JOBS} ok, {} errors, {} hung; {} connections opened; {isolated_left} left after release",
        isolated.ok,
        isolated.errors.len(),
        isolated.hung,
        AtomicUsize::load(&opened, Ordering::Relaxed),
    );
    assert_eq!(
        isolated.ok,
        JOBS,
        "errors: {:?}",
        &isolated.errors[..isolated.errors.len().min(5)]
    );
    assert_eq!(isolated_left, 0);
}
