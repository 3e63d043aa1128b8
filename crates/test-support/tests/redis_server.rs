//! A private redis-server starts, stops, restarts on the same port and keeps an AOF.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use test_support::RedisServer;

/// Sends one inline command and returns the first reply line.
fn cmd(port: u16, line: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{line}\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        if s.read(&mut byte)? == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    // Bulk replies: "$n\r\n<data>\r\n"; read the data line too.
    if buf.starts_with(b"$") && !buf.starts_with(b"$-1") {
        buf.clear();
        while !buf.ends_with(b"\r\n") {
            if s.read(&mut byte)? == 0 {
                break;
            }
            buf.push(byte[0]);
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
}

#[test]
fn appendonly_key_survives_restart_on_the_same_port() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    // Redis 7 writes its AOF into a directory, Redis 6.2 into one file.
    assert!(
        redis.dir().join("appendonlydir").is_dir() || redis.dir().join("appendonly.aof").is_file(),
        "no append-only file"
    );
    assert_eq!(cmd(port, "SET survivor yes").unwrap(), "+OK");

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(cmd(port, "GET survivor").unwrap(), "yes");

    redis.stop();
    assert!(!redis.is_running());
    assert!(cmd(port, "PING").is_err(), "stopped server still answers");
    redis.restart();
    assert_eq!(cmd(port, "GET survivor").unwrap(), "yes");
}

#[test]
fn default_server_saves_nothing_and_kill_loses_data() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(cmd(port, "PING").unwrap(), "+PONG");
    assert_eq!(cmd(port, "SET gone soon").unwrap(), "+OK");
    redis.kill();
    assert!(cmd(port, "PING").is_err(), "killed server still answers");
    redis.restart();
    assert_eq!(cmd(port, "GET gone").unwrap(), "$-1");
}

#[test]
fn drop_kills_the_server_and_removes_its_dir() {
    let redis = RedisServer::start();
    let (port, dir) = (redis.port(), redis.dir().to_path_buf());
    assert!(dir.is_dir());
    drop(redis);
    assert!(cmd(port, "PING").is_err(), "dropped server still answers");
    assert!(!dir.exists());
}

#[test]
fn redis_url_answers_ping() {
    let url = test_support::redis_url();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(cmd(port, "PING").unwrap(), "+PONG");
}
