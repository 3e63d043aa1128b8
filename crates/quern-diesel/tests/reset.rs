//! A connection handed back with a transaction still open is rolled back before reuse.

mod common;

use diesel::dsl::sql;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use quern_core::{Outcome, Resource, ResourceContext};
use quern_diesel::{IsolatedPg, PgConfig, PooledConn};

async fn pid(conn: &mut PooledConn) -> i32 {
    diesel::select(sql::<Integer>("pg_backend_pid()"))
        .get_result(conn)
        .await
        .unwrap()
}

async fn rows(conn: &mut PooledConn, table: &str) -> i64 {
    diesel::select(sql::<BigInt>(&format!("(SELECT count(*) FROM {table})")))
        .get_result(conn)
        .await
        .unwrap()
}

/// The server's view of backend `pid`: `idle` or `idle in transaction`.
async fn state(admin: &tokio_postgres::Client, pid: i32) -> String {
    admin
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0)
}

/// One connection, so every checkout gets the same one back.
async fn single_connection_pool(name: &str) -> IsolatedPg {
    let ctx = common::ctx(name);
    let ext = common::ext(PgConfig::new().database_url(common::database_url()).pool_size(1));
    IsolatedPg::acquire(ResourceContext::new(&ctx, &ext))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_open_raw_transaction_is_rolled_back_before_reuse() {
    let admin = common::admin().await;
    let table = common::unique("reset_open");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let res = single_connection_pool(&table).await;

    let mut conn = res.get().await.unwrap();
    let first = pid(&mut conn).await;
    conn.batch_execute("BEGIN").await.unwrap();
    diesel::sql_query(format!("INSERT INTO {table} VALUES (1)"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows(&mut conn, &table).await, 1);
    drop(conn);
    assert_eq!(state(&admin, first).await, "idle in transaction", "precondition");

    let mut conn = res.get().await.unwrap();
    assert_eq!(pid(&mut conn).await, first, "the same connection, reused");
    assert_eq!(
        state(&admin, first).await,
        "idle",
        "not in a transaction any more"
    );
    assert_eq!(rows(&mut conn, &table).await, 0, "the insert was rolled back");
    drop(conn);
    assert_eq!(res.connections_opened(), 1);

    res.release(Outcome::Succeeded).await;
    admin.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test]
async fn a_failed_raw_transaction_is_rolled_back_before_reuse() {
    let admin = common::admin().await;
    let res = single_connection_pool(&common::unique("reset_failed")).await;

    let mut conn = res.get().await.unwrap();
    let first = pid(&mut conn).await;
    conn.batch_execute("BEGIN").await.unwrap();
    assert!(conn.batch_execute("SELECT 1/0").await.is_err());
    drop(conn);

    let mut conn = res.get().await.unwrap();
    assert_eq!(pid(&mut conn).await, first, "rolled back, not replaced");
    let one: String = diesel::select(sql::<Text>("'ok'"))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, "ok");
    assert_eq!(state(&admin, first).await, "idle");
    drop(conn);
    res.release(Outcome::Succeeded).await;
}

#[tokio::test]
async fn a_diesel_test_transaction_is_left_alone() {
    // `begin_test_transaction` is opened on purpose and diesel tracks it: the reset must not end
    // it behind diesel's back.
    let admin = common::admin().await;
    let table = common::unique("reset_testtx");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let res = single_connection_pool(&table).await;

    let mut conn = res.get().await.unwrap();
    conn.begin_test_transaction().await.unwrap();
    diesel::sql_query(format!("INSERT INTO {table} VALUES (1)"))
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let mut conn = res.get().await.unwrap();
    assert_eq!(
        rows(&mut conn, &table).await,
        1,
        "still inside the test transaction"
    );
    drop(conn);
    res.release(Outcome::Succeeded).await;
    admin.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}
