//! `release` closes the execution's pool on every outcome: no connection outlives it.

mod common;

use std::time::Duration;

use diesel_async::RunQueryDsl;
use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig};

#[tokio::test]
async fn release_leaves_no_connection_behind_whatever_the_outcome() {
    let admin = common::admin().await;
    for outcome in [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Panicked,
        Outcome::TimedOut,
        Outcome::Cancelled,
    ] {
        let name = common::unique("release");
        let ctx = common::ctx(&name);
        let ext = common::ext(PgConfig::new().database_url(common::database_url()));
        let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
            .await
            .unwrap();

        // Two connections at once: one returned to the pool (idle), one still checked out when
        // the execution ends (a guard the job leaked, e.g. into a spawned task).
        let mut a = res.get().await.unwrap();
        let mut b = res.get().await.unwrap();
        diesel::sql_query("SELECT 1").execute(&mut a).await.unwrap();
        diesel::sql_query("SELECT 1").execute(&mut b).await.unwrap();
        drop(a);
        let app = res.application_name().to_owned();
        assert_eq!(common::count_app(&admin, &app).await, 2);
        assert_eq!(res.connections_opened(), 2);

        res.release(outcome).await;
        drop(b);
        let left = common::wait_gone(&admin, &app, Duration::from_secs(5)).await;
        assert_eq!(left, 0, "{outcome:?}: connections of {app} left after release");
    }
}
