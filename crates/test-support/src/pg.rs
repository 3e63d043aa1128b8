//! [`PgServer`]: a private PostgreSQL cluster on a free port, for tests that stop or restart
//! PostgreSQL or must not share a server; and a minimal client for trust-auth servers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{
    connect, current_uid, free_port, is_addr_in_use, log_tail, run_bounded, spawn_watchdog, stop_watchdog,
};

/// Environment variable naming a directory that holds `initdb` and `pg_ctl`.
///
/// Without it the newest `/usr/lib/postgresql/*/bin` is used, then `PATH`.
pub const PG_BIN_ENV: &str = "QUERN_PG_BIN";

/// The role every URL of a [`PgServer`] uses; created as a login superuser.
pub const PG_USER: &str = "root";

/// The database created in every [`PgServer`], used by [`PgServer::url_default`].
pub const PG_DEFAULT_DB: &str = "test";

/// The bootstrap superuser `initdb` creates (the `postgres` system user owns the files as root).
const BOOTSTRAP_USER: &str = "postgres";
/// Bound on `initdb` (it takes 1-3 s on a busy two-core machine).
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound given to `pg_ctl -t`; our own bound on the `pg_ctl` process is a little longer.
const PG_CTL_WAIT_SECS: u64 = 20;
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(PG_CTL_WAIT_SECS + 10);
/// Read/write bound of one statement sent by [`PgServer::execute`].
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at finding a port nobody takes between our probe and the server's bind.
const PORT_ATTEMPTS: usize = 3;

/// A private PostgreSQL cluster: `initdb` in a temporary directory, started with `pg_ctl` on a
/// free port, listening on 127.0.0.1 only (its Unix socket inside the directory), trust
/// authentication, `fsync=off`. It has a login superuser `root` and a database `test`.
///
/// `initdb` refuses to run as root, so when the tests run as root the directory is given to the
/// `postgres` system user and `initdb`/`pg_ctl` run under its uid. Dropping the value stops the
/// server in immediate mode and removes the directory; a watchdog does the same if the test
/// process dies without dropping it.
///
/// ```no_run
/// let mut pg = test_support::PgServer::start();
/// pg.create_database("jobs_a");
/// let url = pg.url("jobs_a"); // postgres://root@127.0.0.1:<port>/jobs_a
/// pg.restart(); // same port, same data
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct PgServer {
    /// Holds `data/` (the cluster), `sock/` (the Unix socket) and `postgres.log`.
    dir: TempDir,
    /// Kept across restarts so clients can reconnect to the same URL.
    port: u16,
    /// Where `initdb` and `pg_ctl` live; `None` means "found on PATH".
    bin_dir: Option<PathBuf>,
    /// uid/gid of the `postgres` system user when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// Whether we started the server and have not stopped it; [`Drop`] stops it only then.
    running: bool,
    /// Cleans up if the test process dies without dropping this value.
    watchdog: Option<Child>,
}

impl PgServer {
    /// Creates a cluster, starts it, and creates the role `root` and the database `test`.
    ///
    /// Panics with a clear message if the PostgreSQL binaries are missing (install
    /// `postgresql` or set `QUERN_PG_BIN`) or if the server does not come up.
    pub fn start() -> Self {
        let bin_dir = find_bin_dir();
        let run_as = if current_uid() == Some(0) {
            Some(postgres_user_ids())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("quern-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("test-support: cannot create a temp dir for PostgreSQL: {e}"));
        let mut pg = PgServer {
            dir,
            port: 0,
            bin_dir,
            run_as,
            running: false,
            watchdog: None,
        };
        // Before anything slow: if the test process dies from here on, nothing is left behind.
        pg.watchdog = spawn_watchdog(pg.dir.path(), &pg.data_dir().join("postmaster.pid"), "QUIT");
        pg.init_cluster();

        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            pg.port = free_port();
            match pg.pg_ctl_start() {
                Ok(()) => {
                    pg.running = true;
                    pg.bootstrap();
                    return pg;
                }
                Err(log) if is_addr_in_use(&log) || log.contains("could not bind") => {
                    last_log = log;
                }
                Err(log) => panic!(
                    "test-support: PostgreSQL did not start on 127.0.0.1:{}:\n{log}",
                    pg.port
                ),
            }
        }
        panic!("test-support: PostgreSQL found no free port after {PORT_ATTEMPTS} attempts:\n{last_log}")
    }

    /// `postgres://root@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of the database `test`.
    pub fn url_default(&self) -> String {
        self.url(PG_DEFAULT_DB)
    }

    /// The TCP port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`PGDATA`) of the cluster.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates database `name`, owned by `root`. Panics if it fails (e.g. it exists).
    pub fn create_database(&self, name: &str) {
        let sql = format!("CREATE DATABASE {} OWNER {PG_USER}", quote_ident(name));
        if let Err(e) = self.try_execute_as(BOOTSTRAP_USER, "postgres", &sql) {
            panic!("test-support: CREATE DATABASE {name} on port {}: {e}", self.port);
        }
    }

    /// Runs `sql` (one or more statements, no results returned) in database `db` as `root`.
    /// Panics with the server's error message if it fails.
    pub fn execute(&self, db: &str, sql: &str) {
        if let Err(e) = self.try_execute_as(PG_USER, db, sql) {
            panic!("test-support: `{sql}` in {db} on port {}: {e}", self.port);
        }
    }

    /// Creates login role `role` with `password` and makes the server check that password for
    /// it (`scram-sha-256`) on TCP; `root` and every other role keep trust authentication, so
    /// [`execute`](Self::execute) and the `root` URLs work as before. The role may use the
    /// database `test`. For tests of a refused login: connect as `role` with a wrong password.
    ///
    /// ```no_run
    /// let pg = test_support::PgServer::start();
    /// pg.add_password_role("app", "right-pw");
    /// let wrong = format!("postgres://app:wrong@127.0.0.1:{}/test", pg.port()); // refused
    /// # drop(wrong);
    /// ```
    pub fn add_password_role(&self, role: &str, password: &str) {
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'; GRANT ALL ON DATABASE {PG_DEFAULT_DB} TO {0}",
            quote_ident(role),
            password.replace('\'', "''")
        );
        self.execute("postgres", &sql);
        // The first matching line wins: ours goes before initdb's `trust` ones.
        let hba_path = self.data_dir().join("pg_hba.conf");
        let hba = std::fs::read_to_string(&hba_path)
            .unwrap_or_else(|e| panic!("test-support: cannot read {}: {e}", hba_path.display()));
        let line = format!("host all {} 127.0.0.1/32 scram-sha-256\n", quote_ident(role));
        std::fs::write(&hba_path, format!("{line}{hba}"))
            .unwrap_or_else(|e| panic!("test-support: cannot write {}: {e}", hba_path.display()));
        self.execute("postgres", "SELECT pg_reload_conf()");
        // The postmaster rereads the file on SIGHUP, asynchronously: wait until it refuses a
        // trust login as the role.
        let refused = crate::process::poll_until(Duration::from_secs(10), || {
            let stream = connect(self.port, QUERY_TIMEOUT).ok()?;
            session(stream, role, PG_DEFAULT_DB, None).err()
        });
        assert!(
            refused.is_some(),
            "test-support: the server on port {} still lets {role} in without a password",
            self.port
        );
    }

    /// Stops the server (`pg_ctl stop -m fast`) and waits until it is down. Does nothing if it
    /// is not running.
    pub fn stop(&mut self) {
        if self.running {
            if let Err(e) = self.pg_ctl_stop("fast") {
                panic!("test-support: pg_ctl stop on port {}: {e}", self.port);
            }
            self.running = false;
        }
    }

    /// Starts a stopped server again, on the same port and data directory, and waits until it
    /// accepts connections. Does nothing if it is running.
    pub fn start_again(&mut self) {
        if !self.running {
            if let Err(log) = self.pg_ctl_start() {
                panic!(
                    "test-support: PostgreSQL did not start again on 127.0.0.1:{}:\n{log}",
                    self.port
                );
            }
            self.running = true;
        }
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// A command for one of the PostgreSQL binaries, run as the `postgres` user when we are root.
    fn command(&self, name: &str) -> Command {
        let program = match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        };
        let mut cmd = Command::new(program);
        // A directory the server user can enter: the caller's cwd may be root-only.
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("HOME", self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            // std drops supplementary groups (setgroups(0)) before setuid when it is root.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn init_cluster(&self) {
        std::fs::create_dir(self.socket_dir())
            .unwrap_or_else(|e| panic!("test-support: cannot create the socket dir: {e}"));
        if let Some((uid, gid)) = self.run_as {
            for path in [self.dir.path().to_path_buf(), self.socket_dir()] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap_or_else(|e| {
                    panic!("test-support: cannot chown {} to postgres: {e}", path.display())
                });
            }
        }
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(self.data_dir()).args([
            "-U",
            BOOTSTRAP_USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        match run_bounded(&mut initdb, INITDB_TIMEOUT) {
            Ok((true, _)) => {}
            Ok((false, out)) => panic!("test-support: initdb failed:\n{out}"),
            Err(e) if e.contains("No such file") => panic!(
                "test-support: cannot run initdb ({e}). Install PostgreSQL \
                 (`apt-get install postgresql`) or set {PG_BIN_ENV} to its bin directory."
            ),
            Err(e) => panic!("test-support: initdb: {e}"),
        }
        let conf = format!(
            "\n# test-support\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            self.socket_dir().display()
        );
        let conf_path = self.data_dir().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .unwrap_or_else(|e| panic!("test-support: cannot open {}: {e}", conf_path.display()));
        file.write_all(conf.as_bytes())
            .unwrap_or_else(|e| panic!("test-support: cannot write {}: {e}", conf_path.display()));
    }

    /// `pg_ctl start -w` on our port; on failure returns pg_ctl's output and the server log.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let log_len = std::fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string()])
            .args(["-o", &format!("-p {}", self.port)])
            .arg("start");
        match run_bounded(&mut cmd, PG_CTL_TIMEOUT) {
            Ok((true, _)) => Ok(()),
            Ok((false, out)) => {
                let _ = self.pg_ctl_stop("immediate");
                let log = std::fs::read(self.log_path()).unwrap_or_default();
                let new = log.get(log_len as usize..).unwrap_or(&log);
                Err(format!(
                    "pg_ctl:\n{out}\nserver log:\n{}",
                    String::from_utf8_lossy(new)
                ))
            }
            Err(e) => {
                let _ = self.pg_ctl_stop("immediate");
                Err(format!("{e}\nserver log:\n{}", log_tail(&self.log_path(), 4000)))
            }
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", &PG_CTL_WAIT_SECS.to_string()])
            .arg("stop");
        match run_bounded(&mut cmd, PG_CTL_TIMEOUT)? {
            (true, _) => Ok(()),
            (false, out) => Err(out),
        }
    }

    /// Creates the `root` login superuser and the `test` database.
    fn bootstrap(&self) {
        let setup = [
            ("postgres", format!("CREATE ROLE {PG_USER} LOGIN SUPERUSER")),
            (
                "postgres",
                format!("CREATE DATABASE {PG_DEFAULT_DB} OWNER {PG_USER}"),
            ),
        ];
        for (db, sql) in setup {
            if let Err(e) = self.try_execute_as(BOOTSTRAP_USER, db, &sql) {
                panic!("test-support: `{sql}` on port {}: {e}", self.port);
            }
        }
    }

    fn try_execute_as(&self, user: &str, db: &str, sql: &str) -> Result<(), String> {
        let stream = connect(self.port, QUERY_TIMEOUT)
            .map_err(|e| format!("cannot connect to 127.0.0.1:{}: {e}", self.port))?;
        session(stream, user, db, Some(sql))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl_stop("immediate");
            self.running = false;
        }
        stop_watchdog(&mut self.watchdog);
        // `dir` (a TempDir) removes itself after this; root may remove postgres-owned files.
    }
}

/// Speaks just enough of the PostgreSQL protocol (v3, trust authentication only) to log in
/// as `user` to `db`, optionally run `sql` as a simple query, and log out.
///
/// Returns the server's error (severity, SQLSTATE, message) if login or the query fails, and
/// an explanation if the server asks for a password.
pub(crate) fn session(mut stream: TcpStream, user: &str, db: &str, sql: Option<&str>) -> Result<(), String> {
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    for (key, value) in [("user", user), ("database", db)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = frame_len(body.len()).to_vec();
    startup.extend_from_slice(&body);
    stream
        .write_all(&startup)
        .map_err(|e| format!("sending the startup message: {e}"))?;
    read_until_ready(&mut stream)?;
    if let Some(sql) = sql {
        let mut query = vec![b'Q'];
        query.extend_from_slice(&frame_len(sql.len() + 1));
        query.extend_from_slice(sql.as_bytes());
        query.push(0);
        stream
            .write_all(&query)
            .map_err(|e| format!("sending the query: {e}"))?;
        read_until_ready(&mut stream)?;
    }
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
    Ok(())
}

/// The length field of a message whose body is `body_len` bytes (the field counts itself).
fn frame_len(body_len: usize) -> [u8; 4] {
    u32::try_from(body_len + 4).unwrap_or(u32::MAX).to_be_bytes()
}

/// Reads messages until ReadyForQuery; returns the first ErrorResponse seen, if any.
fn read_until_ready(stream: &mut TcpStream) -> Result<(), String> {
    let mut error: Option<String> = None;
    loop {
        let mut head = [0u8; 5];
        if let Err(e) = stream.read_exact(&mut head) {
            // After a FATAL error the server closes the connection without ReadyForQuery.
            return Err(error.unwrap_or_else(|| format!("reading from the server: {e}")));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 26).contains(&len) {
            return Err(format!("not a PostgreSQL server (message length {len})"));
        }
        let mut body = vec![0u8; len - 4];
        if let Err(e) = stream.read_exact(&mut body) {
            return Err(error.unwrap_or_else(|| format!("reading from the server: {e}")));
        }
        match head[0] {
            b'R' => {
                let code = body
                    .get(..4)
                    .map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    return Err(format!(
                        "the server asks for authentication (method {code}); test-support only \
                         talks to servers with trust authentication"
                    ));
                }
            }
            b'E' => {
                error.get_or_insert_with(|| describe_error(&body));
            }
            b'Z' => return error.map_or(Ok(()), Err),
            _ => {} // ParameterStatus, BackendKeyData, notices, rows, CommandComplete
        }
    }
}

/// "ERROR 42P04: database \"x\" already exists" from an ErrorResponse body.
fn describe_error(body: &[u8]) -> String {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'S' => severity = text,
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    format!("{severity} {code}: {message}")
}

/// `"name"`, with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The directory holding `initdb` and `pg_ctl`; `None` means they are on `PATH`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            panic!(
                "test-support: {PG_BIN_ENV}={} holds no initdb; point it at a PostgreSQL bin \
                 directory such as /usr/lib/postgresql/16/bin",
                dir.display()
            );
        }
        return Some(dir);
    }
    if let Some(dir) = newest_debian_bin_dir(Path::new("/usr/lib/postgresql")) {
        return Some(dir);
    }
    if let Some(path) = std::env::var_os("PATH")
        && std::env::split_paths(&path).any(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    {
        return None;
    }
    panic!(
        "test-support: PostgreSQL server binaries (initdb, pg_ctl) not found in \
         /usr/lib/postgresql/*/bin or on PATH. Install them (`apt-get install postgresql`) or \
         set {PG_BIN_ENV} to the directory that holds them."
    )
}

/// The `bin` directory of the highest version under `/usr/lib/postgresql/<version>/bin`.
fn newest_debian_bin_dir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let bin = entry.path().join("bin");
        if !bin.join("initdb").is_file() || !bin.join("pg_ctl").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let version: Vec<u32> = name.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// uid and gid of the `postgres` system user; panics with advice if there is none.
fn postgres_user_ids() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!(
            "test-support: the tests run as root and initdb refuses root, but there is no \
             `postgres` system user to run PostgreSQL as. Install PostgreSQL \
             (`apt-get install postgresql` creates the user) or run the tests as another user."
        ),
    }
}
