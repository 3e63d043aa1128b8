//! [`RedisServer`]: a private `redis-server` on a free port, for tests that stop or restart Redis
//! or need a password-protected one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{
    connect, free_port, is_addr_in_use, is_not_found, poll_until, send_signal, spawn_watchdog, stop_watchdog,
    wait_or_kill,
};

/// Environment variable naming the `redis-server` binary (default: `redis-server` on `PATH`).
pub const REDIS_SERVER_ENV: &str = "QUERN_REDIS_SERVER";

/// How long a server may take to answer PING after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::stop`] waits for a graceful exit before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at finding a port nobody takes between our probe and the server's bind.
const PORT_ATTEMPTS: usize = 3;

/// A private `redis-server` on 127.0.0.1 and a free port, in its own temporary directory.
///
/// Started with `--save ""` and `--appendonly no` unless the extra arguments given to
/// [`RedisServer::start_with`] say otherwise. Dropping it kills the server and removes the
/// directory; a watchdog does the same if the test process dies without dropping it.
///
/// ```no_run
/// let mut redis = quern_worker::testing::RedisServer::start_with(&["--appendonly", "yes"]);
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.restart(); // same port, same directory: the append-only file survives
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct RedisServer {
    /// The running server; `None` between [`RedisServer::stop`]/[`RedisServer::kill`] and a restart.
    child: Option<Child>,
    /// Kept across restarts so clients can reconnect to the same URL.
    port: u16,
    /// Working directory (`--dir`): RDB and AOF files live here, so they survive a restart.
    dir: TempDir,
    /// The full argument list, replayed as is by [`RedisServer::restart`].
    args: Vec<String>,
    /// The binary, resolved once from [`REDIS_SERVER_ENV`].
    bin: String,
    /// Cleans up if the test process dies without dropping this value.
    watchdog: Option<Child>,
    /// The `requirepass` password, sent with the readiness PING; `None` for an open server.
    password: Option<String>,
}

impl RedisServer {
    /// Starts a private server with the default arguments. Panics with a clear message if
    /// `redis-server` is missing or does not answer PING within 10 s.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a private server with extra `redis-server` arguments, e.g.
    /// `&["--appendonly", "yes"]`. They are appended after the defaults, and `redis-server`
    /// lets later arguments win, so `--save` or `--appendonly` given here replace the defaults.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_inner(extra_args, None)
    }

    /// Starts a private server that requires `password` (`--requirepass`) from every client,
    /// with extra arguments as for [`RedisServer::start_with`]. [`RedisServer::url`] stays
    /// without the password (a client connecting with it gets `NOAUTH`);
    /// [`RedisServer::url_with_password`] includes it.
    ///
    /// ```no_run
    /// let redis = quern_worker::testing::RedisServer::start_with_password("s3cret", &[]);
    /// assert!(redis.url_with_password().starts_with("redis://:s3cret@127.0.0.1:"));
    /// ```
    pub fn start_with_password(password: &str, extra_args: &[&str]) -> Self {
        let mut args = vec!["--requirepass", password];
        args.extend_from_slice(extra_args);
        Self::start_inner(&args, Some(password.to_owned()))
    }

    fn start_inner(extra_args: &[&str], password: Option<String>) -> Self {
        let bin = std::env::var(REDIS_SERVER_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "redis-server".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("quern-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("quern::testing: cannot create a temp dir for redis: {e}"));

        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            args: Vec::new(),
            bin,
            watchdog: None,
            password,
        };
        // Before the first spawn: if the test process dies from here on, nothing is left behind.
        server.watchdog = spawn_watchdog(server.dir.path(), &server.pidfile(), "TERM");
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            server.args = build_args(server.port, server.dir.path(), extra_args);
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if is_addr_in_use(&log) => last_log = log,
                Err(log) => panic!(
                    "quern::testing: redis-server ({}) did not start on 127.0.0.1:{}.\n\
                     Its log:\n{log}",
                    server.bin, server.port
                ),
            }
        }
        panic!(
            "quern::testing: redis-server found no free port after {PORT_ATTEMPTS} attempts.\n\
             Last log:\n{last_log}"
        )
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://:<password>@127.0.0.1:<port>` for a server started with
    /// [`RedisServer::start_with_password`] (the password percent-encoded), else the same as
    /// [`RedisServer::url`].
    pub fn url_with_password(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{}@127.0.0.1:{}", percent_encode(password), self.port),
            None => self.url(),
        }
    }

    /// The TCP port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (`--dir`), where RDB and AOF files are written.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is running (it has not been stopped, killed, or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the server gracefully (SIGTERM, which behaves like `SHUTDOWN`: the AOF is flushed,
    /// an RDB is saved only if save points are configured) and waits for it to exit (at most
    /// 10 s, then SIGKILL). Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if !send_signal(child.id(), "TERM") {
                let _ = child.kill();
            }
            wait_or_kill(&mut child, STOP_TIMEOUT);
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it. Nothing is flushed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // A SIGKILLed server leaves its pid file behind; the watchdog must not trust it.
            let _ = std::fs::remove_file(self.pidfile());
        }
    }

    /// Stops the server if it runs, then starts it again on the same port, in the same
    /// directory, with the same arguments, and waits until it answers PING (an append-only
    /// file is loaded first). Panics if it does not come back within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "quern::testing: redis-server did not restart on 127.0.0.1:{}.\nIts log:\n{log}",
                self.port
            );
        }
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("redis.pid")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns the server and waits for PING; on failure returns the log (the child is reaped).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))?;
        let log_len = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if is_not_found(&e) => panic!(
                "quern::testing: cannot find `{}`. Install Redis (`apt-get install redis-server`, \
                 `brew install redis`), set {REDIS_SERVER_ENV} to the path of a redis-server \
                 binary, or set REDIS_URL to a running server.",
                self.bin
            ),
            Err(e) => panic!("quern::testing: cannot run `{}`: {e}", self.bin),
        };
        self.child = Some(child);
        let port = self.port;
        let password = self.password.clone();
        let ready = poll_until(READY_TIMEOUT, || {
            let child = self.child.as_mut()?;
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            ping_with(port, password.as_deref(), Duration::from_millis(200)).then_some(true)
        });
        if ready == Some(true) {
            return Ok(());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = log_since(&self.log_path(), log_len);
        match ready {
            None => Err(format!("no PONG within {READY_TIMEOUT:?}.\n{log}")),
            _ => Err(log),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        stop_watchdog(&mut self.watchdog);
        // `dir` (a TempDir) removes itself after this.
    }
}

/// Sends a raw `PING` and reports whether `+PONG` came back within `timeout`.
///
/// A server that is loading its data answers `-LOADING`, which counts as not ready.
pub(crate) fn ping(port: u16, timeout: Duration) -> bool {
    ping_with(port, None, timeout)
}

/// [`ping`], first authenticating with `password` (`AUTH`, pipelined) when there is one.
fn ping_with(port: u16, password: Option<&str>, timeout: Duration) -> bool {
    let Ok(mut stream) = connect(port, timeout) else {
        return false;
    };
    let mut request = Vec::new();
    let mut expected: Vec<u8> = Vec::new();
    if let Some(password) = password {
        // As a RESP array, so that any byte of the password is sent as it is.
        request.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n", password.len()).as_bytes());
        request.extend_from_slice(password.as_bytes());
        request.extend_from_slice(b"\r\n");
        expected.extend_from_slice(b"+OK\r\n");
    }
    request.extend_from_slice(b"PING\r\n");
    expected.extend_from_slice(b"+PONG");
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    let lines = expected.iter().filter(|&&b| b == b'\n').count() + 1;
    while got < expected.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if buf[..got].iter().filter(|&&b| b == b'\n').count() >= lines {
            break;
        }
    }
    buf[..got].starts_with(&expected)
}

/// `s` with every byte but unreserved ones (`A-Z a-z 0-9 - . _ ~`) percent-encoded.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn build_args(port: u16, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--daemonize".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--pidfile".into(),
        dir.join("redis.pid").display().to_string(),
    ];
    // Later arguments win (checked with Redis 7.0: `--save "" --save "900 1"` leaves `900 1`),
    // so the caller's arguments, appended last, override these defaults.
    args.extend(["--save".into(), String::new(), "--appendonly".into(), "no".into()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn log_since(path: &Path, offset: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    let new = bytes.get(offset..).filter(|b| !b.is_empty()).unwrap_or(&bytes);
    let start = new.len().saturating_sub(4000);
    String::from_utf8_lossy(&new[start..]).into_owned()
}
