//! Process plumbing shared by the Redis and PostgreSQL servers: free ports, bounded polling,
//! the watchdog that cleans up after a test process that dies without dropping its servers.

use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
///
/// The listener is dropped before the server binds, so another process may take the port in
/// between; callers retry the start a few times when the server reports "address in use".
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("test-support: cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .expect("test-support: local_addr of a bound listener")
        .port()
}

/// Connects to 127.0.0.1:`port` within `timeout`, with read and write timeouts set too.
pub(crate) fn connect(port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Calls `ready` every 10 ms until it returns `Some`, or returns `None` at `deadline`.
pub(crate) fn poll_until<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit, at most `timeout`; kills it (SIGKILL) if it has not.
pub(crate) fn wait_or_kill(child: &mut Child, timeout: Duration) {
    let exited = poll_until(timeout, || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `signal` (a name such as `TERM`) to `pid` with the `kill` utility.
pub(crate) fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

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

/// Kills the server whose pid is in `pidfile` and removes `dir` once this test process is gone.
///
/// A server that is dropped normally cleans up after itself; this covers the rest: servers kept
/// in statics (never dropped), a test process killed by a timeout, `panic = "abort"`. The watchdog
/// is a tiny `sh` loop in its own process group, so a Ctrl-C aimed at the tests does not kill it
/// before it has done its job. It exits on its own as soon as `dir` disappears.
pub(crate) fn spawn_watchdog(dir: &Path, pidfile: &Path, signal: &str) -> Option<Child> {
    const SCRIPT: &str = r#"
t=$1; d=$2; p=$3; s=$4
while kill -0 "$t" 2>/dev/null; do
  [ -d "$d" ] || exit 0
  sleep 1
done
[ -d "$d" ] || exit 0
if [ -f "$p" ]; then
  pid=$(head -n 1 "$p")
  if [ -n "$pid" ]; then
    kill -"$s" "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null
  fi
fi
rm -rf "$d"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("quern-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(pidfile)
        .arg(signal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

/// Stops a watchdog that is no longer needed (its server was dropped normally).
pub(crate) fn stop_watchdog(watchdog: &mut Option<Child>) {
    if let Some(mut child) = watchdog.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether `err` (or a server log) says the port was taken.
pub(crate) fn is_addr_in_use(text: &str) -> bool {
    text.contains("Address already in use") || text.contains("address already in use")
}

/// Whether an I/O error means the program does not exist.
pub(crate) fn is_not_found(err: &std::io::Error) -> bool {
    err.kind() == ErrorKind::NotFound
}
