//! Real Redis and PostgreSQL servers for Quern's tests.
//!
//! Most tests only need *a* server and their own namespace in it:
//!
//! ```no_run
//! let redis = test_support::redis_url(); // $REDIS_URL, the local server, or a private one
//! let queue = test_support::unique_name("emails"); // e.g. emails_4711_3_k2x9q1
//! # drop((redis, queue));
//! ```
//!
//! Tests that stop, kill or restart a server start their own: [`RedisServer`], [`PgServer`].
//! Everything is synchronous, so it works the same from `#[test]` and `#[tokio::test]` (call
//! it before the first `.await`, or in `spawn_blocking`, if a start may take a while).
//!
//! # Layout
//! - this file: [`redis_url`], [`database_url`], [`unique_name`].
//! - `redis`: [`RedisServer`], a private `redis-server` (from `quern_worker::testing`).
//! - `pg`: [`PgServer`], a private PostgreSQL cluster, and a tiny trust-auth client.
//! - `process`: bounded commands for PostgreSQL; free ports, bounded waits and the watchdog that
//!   kills servers a test process leaves behind come from `quern_worker::testing`.
#![forbid(unsafe_code)]

mod pg;
mod process;
mod redis;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use pg::{PG_BIN_ENV, PG_DEFAULT_DB, PG_USER, PgServer};
pub use redis::{REDIS_SERVER_ENV, RedisServer};

/// The Redis a test should use when it does not stop the server: `$REDIS_URL`, else
/// `redis://127.0.0.1:6379` if it answers, else a private [`RedisServer`] started once per test
/// process. The same function users' tests call, `quern::testing::redis_url`. Share it by
/// namespacing keys with [`unique_name`].
pub fn redis_url() -> String {
    quern_worker::testing::redis_url()
}

/// The PostgreSQL database a test should use when it does not stop the server.
///
/// In order: `$DATABASE_URL` if set and not empty; `postgres://root@127.0.0.1:5432/test` if
/// that server accepts within ~300 ms and lets `root` into `test` without a password (checked
/// with a startup message and `SELECT 1`, bounded by 2 s); otherwise the database `test` of a
/// private [`PgServer`] started once per test process and stopped by a watchdog when the
/// process exits. Share it by giving each test its own schema or database ([`unique_name`]).
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    static PRIVATE: OnceLock<PgServer> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = env_url("DATABASE_URL") {
            return url;
        }
        if local_postgres_answers() {
            return format!("postgres://{PG_USER}@127.0.0.1:5432/{PG_DEFAULT_DB}");
        }
        PRIVATE.get_or_init(PgServer::start).url_default()
    })
    .clone()
}

/// A short name unique to this call, for queues, key prefixes, schemas and databases.
///
/// `prefix` (lowercased, other characters than `[a-z0-9_]` replaced by `_`, at most 24
/// characters) + `_` + process id + `_` + a per-process counter + `_` + six random characters.
/// It contains only `[a-z0-9_]` and starts with a letter, so it is a valid unquoted PostgreSQL
/// identifier, and it is unique across the parallel tests of one run and across processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = prefix
        .chars()
        .take(24)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        clean.insert(0, 't');
    }
    format!("{clean}_{}_{n}_{}", std::process::id(), random_suffix(n))
}

/// Six base-36 characters from std's randomly keyed hasher (no `rand` dependency needed).
fn random_suffix(n: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    let mut v = hasher.finish();
    (0..6)
        .map(|_| {
            let d = (v % 36) as u32;
            v /= 36;
            char::from_digit(d, 36).unwrap_or('0')
        })
        .collect()
}

fn env_url(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn local_postgres_answers() -> bool {
    let Ok(stream) = process::connect(5432, Duration::from_millis(300)) else {
        return false;
    };
    let bounded = stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(2))));
    bounded.is_ok() && pg::session(stream, PG_USER, PG_DEFAULT_DB, Some("SELECT 1")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_use_a_safe_alphabet() {
        let names: std::collections::HashSet<String> =
            (0..1000).map(|_| unique_name("Queue-Name.X")).collect();
        assert_eq!(names.len(), 1000);
        for name in &names {
            assert!(name.starts_with("queue_name_x_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            assert!(name.len() <= 63, "{name}");
        }
        assert!(unique_name("").starts_with("t_"));
        assert!(unique_name("9lives").starts_with("t9lives_"));
    }
}
