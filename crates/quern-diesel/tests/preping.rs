//! A connection killed while idle in the pool is noticed at checkout and replaced.

mod common;

use std::time::Duration;

use diesel::dsl::sql;
use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;
use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig, PooledConn};

async fn pid(conn: &mut PooledConn) -> i32 {
    diesel::select(sql::<Integer>("pg_backend_pid()"))
        .get_result(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_terminated_backend_is_replaced_on_checkout() {
    let admin = common::admin().await;
    let ctx = common::ctx(&common::unique("preping"));
    let ext = common::ext(PgConfig::new().database_url(common::database_url()).pool_size(1));
    let res = IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
        .await
        .unwrap();

    let mut conn = res.get().await.unwrap();
    let first = pid(&mut conn).await;
    drop(conn);

    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    assert!(common::wait_pid_gone(&admin, first, Duration::from_secs(5)).await);

    let mut conn = tokio::time::timeout(Duration::from_secs(10), res.get())
        .await
        .expect("get() is bounded")
        .expect("a dead pooled connection is replaced, not handed out");
    let second = pid(&mut conn).await;
    assert_ne!(first, second);
    assert_eq!(res.connections_opened(), 2);
    drop(conn);
    res.release(Outcome::Succeeded).await;
}
