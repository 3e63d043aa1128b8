//! Helpers shared by the integration tests: the database URL, unique names, an admin connection
//! that inspects `pg_stat_activity`, and bounded polling.
#![allow(dead_code)]

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use quern_core::{Extensions, JobContext, JobId};
use quern_diesel::PgConfig;

/// `DATABASE_URL`, or the machine's shared test database.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// `prefix_<pid>_<random>`: a name no parallel test (or test process) shares. Lowercase ASCII,
/// digits and underscores only, so it is a valid unquoted SQL identifier.
pub fn unique(prefix: &str) -> String {
    let random = RandomState::new().hash_one(Instant::now()) as u32;
    format!("{prefix}_{}_{random:08x}", std::process::id())
}

/// A job context for an execution of job `name`.
pub fn ctx(name: &str) -> JobContext {
    JobContext::new(JobId::new(), name, "test", 1)
}

/// Worker extensions holding `config`.
pub fn ext(config: PgConfig) -> Extensions {
    let mut ext = Extensions::new();
    ext.insert(config);
    ext
}

/// `base` pointing at database `db` instead (URL form only).
pub fn url_with_db(base: &str, db: &str) -> String {
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (base, ""),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let path_start = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &head[..path_start])
}

/// `base` with one more query parameter.
pub fn url_with_param(base: &str, key: &str, value: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{key}={value}")
}

/// An admin connection on the current runtime, for inspecting the server.
pub async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect admin client");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Server backends whose `application_name` starts with `prefix` (our own admin excluded).
pub async fn count_app(admin: &tokio_postgres::Client, prefix: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE left(application_name, length($1)) = $1 AND pid <> pg_backend_pid()",
            &[&prefix],
        )
        .await
        .expect("count pg_stat_activity")
        .get(0)
}

/// Polls until no backend's `application_name` starts with `prefix`, for at most `limit`;
/// returns the last count seen (0 on success).
pub async fn wait_gone(admin: &tokio_postgres::Client, prefix: &str, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let n = count_app(admin, prefix).await;
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until backend `pid` is gone, for at most `limit`; returns whether it is.
pub async fn wait_pid_gone(admin: &tokio_postgres::Client, pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let n: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .expect("look up pid")
            .get(0);
        if n == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
