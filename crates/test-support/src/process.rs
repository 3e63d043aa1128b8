//! Process plumbing of the PostgreSQL server: bounded commands, the current uid, log tails. Free
//! ports, bounded polling and the watchdog that cleans up after a test process that dies without
//! dropping its servers are `quern_worker::testing`'s, shared with the Redis server.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `cmd`, waiting at most `timeout`; returns its exit success and combined output.
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<(bool, String), String> {
    let mut out = tempfile::tempfile().map_err(|e| format!("cannot create a temp file: {e}"))?;
    let stdout = out
        .try_clone()
        .map_err(|e| format!("cannot clone a file handle: {e}"))?;
    let stderr = out
        .try_clone()
        .map_err(|e| format!("cannot clone a file handle: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let status = poll_until(timeout, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut text = String::new();
    let _ = out.seek(SeekFrom::Start(0));
    let _ = out.read_to_string(&mut text);
    match status {
        Some(s) => Ok((s.success(), text)),
        None => Err(format!(
            "{cmd:?} did not finish within {timeout:?}; its output:\n{text}"
        )),
    }
}

/// The effective uid of this process (the owner of `/proc/self`), without `unsafe`.
pub(crate) fn current_uid() -> Option<u32> {
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        return Some(meta.uid());
    }
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The last `max` bytes of a log file, for panic messages.
pub(crate) fn log_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

pub(crate) use quern_worker::testing::process::{
    connect, free_port, is_addr_in_use, poll_until, spawn_watchdog, stop_watchdog,
};
