//! 1,000 acquire/use/release cycles, on runtimes per execution and concurrently on one
//! multi-thread runtime, leave no connection behind.

mod common;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use quern_core::{ErrorChain, Extensions, Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig};
use tokio::sync::Semaphore;

const THREADS: usize = 4;
const PER_THREAD: usize = 50;
const CONCURRENT: usize = 800;
const IN_FLIGHT: usize = 8;
const PER_JOB: Duration = Duration::from_secs(10);

/// One execution: acquire, (usually) query, release. Returns the connections it opened.
async fn execution(name: &str, ext: &Extensions, i: usize) -> Result<u64, String> {
    let ctx = common::ctx(name);
    let res = IsolatedPg::acquire(ResourceContext::new(&ctx, ext))
        .await
        .map_err(|e| e.to_string())?;
    let used = if i % 10 == 9 {
        Ok(None) // a job that never touches the database
    } else {
        async {
            let mut a = res.get().await?;
            diesel::sql_query("SELECT 1").execute(&mut a).await?;
            if i.is_multiple_of(7) {
                // Two connections at once; the second still checked out at release.
                let mut b = res.get().await?;
                diesel::sql_query("SELECT 2").execute(&mut b).await?;
                return Ok(Some(b));
            }
            Ok::<_, quern_diesel::PgError>(None)
        }
        .await
        .map_err(|e| ErrorChain::of(&e).to_string())
    };
    let opened = res.connections_opened();
    res.release(if used.is_ok() {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    })
    .await;
    used.map(|still_checked_out| {
        drop(still_checked_out);
        opened
    })
}

#[test]
fn a_thousand_executions_leave_no_connection() {
    let name = common::unique("churn");
    let ext = Arc::new(common::ext(PgConfig::new().database_url(common::database_url())));

    // Isolation::Runtime: a fresh current-thread runtime per execution, on its own thread.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (name, ext) = (name.clone(), Arc::clone(&ext));
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                for j in 0..PER_THREAD {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let i = t * PER_THREAD + j;
                    // The timer must be created inside the runtime.
                    let r =
                        rt.block_on(async { tokio::time::timeout(PER_JOB, execution(&name, &ext, i)).await });
                    match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => errors.push(e),
                        Err(_) => errors.push("timed out".into()),
                    }
                }
                errors
            })
        })
        .collect();

    // Isolation::Task: many executions at once on one multi-thread runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut errors: Vec<String> = rt.block_on(async {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..CONCURRENT {
            let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
            let (name, ext) = (name.clone(), Arc::clone(&ext));
            set.spawn(async move {
                let r = tokio::time::timeout(PER_JOB, execution(&name, &ext, i)).await;
                drop(permit);
                match r {
                    Ok(r) => r.err(),
                    Err(_) => Some("timed out".into()),
                }
            });
        }
        set.join_all().await.into_iter().flatten().collect()
    });
    for t in threads {
        errors.extend(t.join().unwrap());
    }

    let left = rt.block_on(async {
        let admin = common::admin().await;
        common::wait_gone(&admin, &format!("quern:{name}:"), Duration::from_secs(10)).await
    });
    assert!(
        errors.is_empty(),
        "{} of 1000 executions failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(left, 0, "connections left after 1000 executions");
}
