//! Acquiring and releasing an `IsolatedPg` that is never used allocates nothing once the worker's
//! config has been resolved (by the first execution): it costs what `Resources = ()` costs.
//!
//! The counting allocator is process-wide, so this binary holds one test, runs the futures
//! (which never wait when the pool is unused) without a runtime whose own bookkeeping could
//! allocate, and takes the fewest allocations of a few attempts: the test harness's own thread may
//! allocate now and then, while an allocation in the measured path shows in every attempt.

use std::alloc::System;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use quern_core::{Extensions, JobContext, JobId, Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Acquire + release cycles counted per attempt.
const CYCLES: usize = 100;

/// Attempts per scenario; the fewest allocations counts.
const ATTEMPTS: usize = 5;

/// The output of `f`, which must not wait.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an unused resource never waits"),
    }
}

fn cycle<R: Resource>(ctx: &JobContext, ext: &Extensions) {
    let r = now(R::acquire(ResourceContext::new(ctx, ext))).expect("acquire");
    black_box(&r);
    now(r.release(Outcome::Succeeded));
}

/// The fewest allocations (and reallocations) `f` made in `CYCLES` calls, over `ATTEMPTS`.
fn fewest(mut f: impl FnMut()) -> usize {
    (0..ATTEMPTS)
        .map(|_| {
            let region = Region::new(GLOBAL);
            for _ in 0..CYCLES {
                f();
            }
            let stats = region.change();
            stats.allocations + stats.reallocations
        })
        .min()
        .unwrap_or_default()
}

/// Allocations made by `CYCLES` acquire + release of `R`, after one that is not counted (it
/// resolves the config and registers the tracing callsites).
fn allocations<R: Resource>(ctx: &JobContext, ext: &Extensions) -> usize {
    cycle::<R>(ctx, ext);
    fewest(|| cycle::<R>(ctx, ext))
}

fn ext(config: PgConfig) -> Extensions {
    let mut ext = Extensions::new();
    ext.insert(config);
    ext
}

#[test]
fn an_unused_isolated_pg_allocates_nothing() {
    let ctx = JobContext::new(
        JobId::new(),
        "a_job_with_a_rather_long_name_to_truncate",
        "test",
        1,
    );
    let scenarios = [
        ("no PgConfig (defaults, DATABASE_URL)", Extensions::new()),
        (
            "a PgConfig with a URL",
            ext(PgConfig::new().database_url("postgres://u:pw@127.0.0.1:5432/test")),
        ),
        (
            "a PgConfig without a URL (DATABASE_URL)",
            ext(PgConfig::new().pool_size(2)),
        ),
        (
            "a configured application_name",
            ext(PgConfig::new().application_name("réports, a name longer than sixty-three bytes in all")),
        ),
    ];
    // Without a subscriber, and with one at INFO as a worker typically runs (release's event is
    // at DEBUG: its fields must not be evaluated).
    let info = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_test_writer()
        .finish();
    let info = tracing::Dispatch::new(info);
    for (with, ext) in &scenarios {
        assert_eq!(allocations::<()>(&ctx, ext), 0, "()");
        assert_eq!(allocations::<IsolatedPg>(&ctx, ext), 0, "{with}, no subscriber");
        tracing::dispatcher::with_default(&info, || {
            assert_eq!(
                allocations::<IsolatedPg>(&ctx, ext),
                0,
                "{with}, subscriber at INFO"
            );
        });
    }

    // `IsolatedPg::new` with the same config shares the same resolved settings.
    let config = PgConfig::new().database_url("postgres://u@127.0.0.1:5432/test");
    now(IsolatedPg::new(&config, &ctx).release(Outcome::Cancelled));
    let new = fewest(|| {
        let pg = IsolatedPg::new(&config, &ctx);
        black_box(&pg);
        now(pg.release(Outcome::Cancelled));
    });
    assert_eq!(new, 0, "IsolatedPg::new");

    // The counter does see allocations: a config changed after its first acquire no longer
    // matches what it cached, so each acquire resolves it afresh.
    let mut changed = config;
    changed.pool_size = 3;
    let fresh = fewest(|| drop(black_box(IsolatedPg::new(&changed, &ctx))));
    assert!(fresh >= CYCLES, "a changed config is resolved afresh: {fresh}");
}
