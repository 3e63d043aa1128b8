//! Process plumbing for private servers in tests: free ports, bounded polling, and the watchdog
//! that cleans up after a test process that dies without dropping its servers. Shared with
//! Quern's own test-support crate (its PostgreSQL server); not a stable API.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
///
/// The listener is dropped before the server binds, so another process may take the port in
/// between; callers retry the start a few times when the server reports "address in use".
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("quern::testing: cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .expect("quern::testing: local_addr of a bound listener")
        .port()
}

/// Connects to 127.0.0.1:`port` within `timeout`, with read and write timeouts set too.
pub fn connect(port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Calls `ready` every 10 ms until it returns `Some`, or returns `None` at `deadline`.
pub fn poll_until<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
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
pub fn wait_or_kill(child: &mut Child, timeout: Duration) {
    let exited = poll_until(timeout, || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `signal` (a name such as `TERM`) to `pid` with the `kill` utility.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills the server whose pid is in `pidfile` and removes `dir` once this test process is gone.
///
/// A server that is dropped normally cleans up after itself; this covers the rest: servers kept
/// in statics (never dropped), a test process killed by a timeout, `panic = "abort"`. The watchdog
/// is a tiny `sh` loop in its own process group, so a Ctrl-C aimed at the tests does not kill it
/// before it has done its job. It exits on its own as soon as `dir` disappears.
pub fn spawn_watchdog(dir: &Path, pidfile: &Path, signal: &str) -> Option<Child> {
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
pub fn stop_watchdog(watchdog: &mut Option<Child>) {
    if let Some(mut child) = watchdog.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether `err` (or a server log) says the port was taken.
pub fn is_addr_in_use(text: &str) -> bool {
    text.contains("Address already in use") || text.contains("address already in use")
}

/// Whether an I/O error means the program does not exist.
pub fn is_not_found(err: &std::io::Error) -> bool {
    err.kind() == ErrorKind::NotFound
}
