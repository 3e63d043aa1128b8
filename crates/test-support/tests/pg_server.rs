//! A private PostgreSQL starts, serves `root@…/test`, restarts on the same port and keeps data.

use std::process::Command;

use test_support::PgServer;

/// Runs `psql <url> -c <sql>` and returns its trimmed output (tuples only, unaligned).
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .env("PGCONNECT_TIMEOUT", "2")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn start_connect_restart_connect() {
    let mut pg = PgServer::start();
    let url = pg.url_default();
    assert_eq!(url, format!("postgres://root@127.0.0.1:{}/test", pg.port()));
    assert_eq!(psql(&url, "select current_user").unwrap(), "root");
    assert_eq!(psql(&url, "show listen_addresses").unwrap(), "127.0.0.1");
    assert_eq!(psql(&url, "show fsync").unwrap(), "off");
    pg.execute("test", "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");

    let db = test_support::unique_name("pg_db");
    pg.create_database(&db);
    assert_eq!(psql(&pg.url(&db), "select current_database()").unwrap(), db);

    let port = pg.port();
    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(psql(&url, "select v from kept").unwrap(), "42");

    pg.stop();
    assert!(psql(&url, "select 1").is_err(), "stopped server still answers");
    pg.start_again();
    assert_eq!(psql(&url, "select 1").unwrap(), "1");

    let data = pg.data_dir();
    drop(pg);
    assert!(psql(&url, "select 1").is_err(), "dropped server still answers");
    assert!(!data.exists());
}

#[test]
fn database_url_answers() {
    let url = test_support::database_url();
    assert_eq!(psql(&url, "select 1").unwrap(), "1");
}
