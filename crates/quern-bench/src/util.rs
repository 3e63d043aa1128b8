//! Redis helpers shared by the harness: key cleanup, INFO fields, process resource usage.

use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;

/// Opens a multiplexed connection with no response timeout (the driver's default is 500 ms,
/// which a large bulk script may exceed).
pub async fn connect(url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(url).with_context(|| format!("bad redis url {}", redact(url)))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(60)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .with_context(|| format!("cannot connect to {}", redact(url)))
}

/// The URL without its password, for messages ([`quern_core::redact_url`]).
pub fn redact(url: &str) -> String {
    quern_core::redact_url(url)
}

/// Deletes every key matching `pattern` (SCAN + UNLINK); returns how many were deleted.
pub async fn delete_matching(con: &mut MultiplexedConnection, pattern: &str) -> Result<u64> {
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(con).await?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(deleted);
        }
    }
}

/// One field of `INFO section`.
pub async fn info_field(con: &mut MultiplexedConnection, section: &str, field: &str) -> Result<String> {
    let info: String = redis::cmd("INFO").arg(section).query_async(con).await?;
    info.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("INFO {section} has no {field}"))
}

/// The server's version as (major, minor, patch).
pub async fn redis_version(url: &str) -> Result<(u32, u32, u32)> {
    let mut con = connect(url).await?;
    let v = info_field(&mut con, "server", "redis_version").await?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Ok((
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ))
}

/// `used_memory` in bytes.
pub async fn used_memory(con: &mut MultiplexedConnection) -> Result<i64> {
    Ok(info_field(con, "memory", "used_memory").await?.parse()?)
}

/// User + system CPU time of this whole process so far (getrusage RUSAGE_SELF).
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            Duration::from_micros(us(u.user_time()) + us(u.system_time()))
        }
        Err(_) => Duration::ZERO,
    }
}

/// Current and peak resident set size of this process in bytes (`/proc/self/status`).
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak-RSS mark (`echo 5 > /proc/self/clear_refs`); false if the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Waits until `done()` is true, polling every millisecond, up to `bound`.
pub async fn wait_until(bound: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + bound;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {bound:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}
