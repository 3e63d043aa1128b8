//! An unreachable or misconfigured server gives a classified, redacted error with its cause.

mod common;

use std::error::Error as _;
use std::time::Duration;

use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig, PgError};

/// A local port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn get_error(url: &str) -> PgError {
    let ctx = common::ctx(&common::unique("unreachable"));
    let config = PgConfig::new()
        .database_url(url)
        .connect_timeout(Duration::from_secs(2));
    let ext = common::ext(config);
    let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), res.get())
        .await
        .expect("get() is bounded by the connect timeout")
        .expect_err("nothing listens there");
    res.release(Outcome::Failed).await;
    err
}

#[tokio::test]
async fn connection_refused_is_retryable_and_redacted() {
    let port = closed_port();
    let err = get_error(&format!("postgres://quern:s3cr3t-pw@127.0.0.1:{port}/tenant_db")).await;

    assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("tenant_db"), "{text}");
    assert!(text.contains("quern:***@"), "{text}");
    assert!(err.source().is_some(), "the driver's error is kept as the source");

    let job = err.into_job_error();
    assert!(job.is_retryable());
    let chain = job.chain().to_string();
    println!("{chain}");
    assert!(!chain.contains("s3cr3t-pw"), "{chain}");
    assert!(job.chain().0.len() >= 2, "{chain}");
}

#[tokio::test]
async fn a_malformed_url_is_permanent() {
    let err = get_error("postgres://quern:s3cr3t-pw@127.0.0.1:notaport/db").await;
    assert!(matches!(err, PgError::InvalidUrl { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.into_job_error().is_retryable());
}

#[tokio::test]
async fn a_missing_database_is_a_connect_error_naming_it() {
    let db = common::unique("no_such_db");
    let err = get_error(&common::url_with_db(&common::database_url(), &db)).await;
    assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&db), "{err}");
}
