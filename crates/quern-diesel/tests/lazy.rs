//! Acquiring the resource connects to nothing; only `get()` does.

mod common;

use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig};

#[tokio::test]
async fn acquire_and_release_without_get_opens_no_connection() {
    let admin = common::admin().await;
    let name = common::unique("lazy");
    let ctx = common::ctx(&name);
    let ext = common::ext(PgConfig::new().database_url(common::database_url()));

    let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
        .await
        .unwrap();
    assert!(res.application_name().starts_with(&format!("quern:{name}:")));
    assert_eq!(common::count_app(&admin, res.application_name()).await, 0);
    assert_eq!(res.connections_opened(), 0);
    let app = res.application_name().to_owned();
    res.release(Outcome::Succeeded).await;

    assert_eq!(common::count_app(&admin, &app).await, 0);
}

#[tokio::test]
async fn a_bad_url_does_not_fail_acquire_only_get() {
    // A job that never touches the database must not fail because the database is misconfigured.
    let ctx = common::ctx(&common::unique("lazy_bad"));
    let ext = common::ext(PgConfig::new().database_url("postgres://u:pw@h:notaport/db"));
    let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
        .await
        .unwrap();
    let err = res.get().await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    res.release(Outcome::Failed).await;
}
