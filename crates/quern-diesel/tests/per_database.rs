//! Each execution can pick its own database (a tenant's) before its first query.

mod common;

use std::time::Duration;

use diesel::dsl::sql;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig, PgError};

/// Runs one execution against `db` and returns `current_database()` as the job saw it.
async fn execution_on(db_url: &str, name: &str) -> String {
    let ctx = common::ctx(name);
    let ext = common::ext(PgConfig::new().database_url(common::database_url()));
    let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
        .await
        .unwrap();
    res.use_database(db_url).unwrap();
    assert_eq!(res.database_url_redacted().as_deref(), Some(db_url));
    let mut conn = res.get().await.unwrap();
    let current: String = diesel::select(sql::<Text>("current_database()"))
        .get_result(&mut conn)
        .await
        .unwrap();

    // Once connected, the database is fixed for this execution.
    res.use_database(db_url).expect("the same URL again is fine");
    let other = common::url_with_db(db_url, "postgres");
    assert!(matches!(
        res.use_database(other),
        Err(PgError::AlreadyConnected { .. })
    ));

    drop(conn);
    res.release(Outcome::Succeeded).await;
    current
}

#[tokio::test]
async fn two_executions_two_databases() {
    let admin = common::admin().await;
    let name = common::unique("perdb");
    let (db_a, db_b) = (format!("{name}_a"), format!("{name}_b"));
    for db in [&db_a, &db_b] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    }
    let base = common::database_url();

    let seen_a = execution_on(&common::url_with_db(&base, &db_a), &name).await;
    let seen_b = execution_on(&common::url_with_db(&base, &db_b), &name).await;

    let left = common::wait_gone(&admin, &format!("quern:{name}:"), Duration::from_secs(5)).await;
    for db in [&db_a, &db_b] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    assert_eq!((seen_a.as_str(), seen_b.as_str()), (db_a.as_str(), db_b.as_str()));
    assert_eq!(left, 0);
}
