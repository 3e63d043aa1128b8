//! No password reaches a log line, a CLI output or a stored dead record, whatever the
//! configuration path: the `quern` binary given a Redis URL by `--redis-url` and by `REDIS_URL`
//! (right, wrong, missing and malformed passwords, against a private password-protected
//! `redis-server`), a worker that runs through a restart of that server, and `IsolatedPg` jobs
//! whose login a private PostgreSQL refuses (URL and `key=value` forms), dead-lettered and then
//! shown by `dead show` / `job show` and read raw from Redis.
//!
//! Every process runs with `RUST_LOG=debug`, every in-process log line (and `log` record) at
//! debug or finer goes to one buffer, and every text is searched for every secret and for
//! fragments of it (a password cut at a space or a `#` leaks its halves).

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use quern_core::{Backoff, Job, JobContext, JobError, JobOptions};
use quern_diesel::{IsolatedPg, PgConfig};
use quern_redis::{DeadRecord, Producer, RedisConfig, Storage};
use quern_worker::{Registry, Worker};
use serde::{Deserialize, Serialize};
use test_support::{PgServer, RedisServer};

/// The private Redis server's password: right, so never to be printed either.
const REDIS_PW: &str = "R1ghtRedisPw9";
/// A wrong password, given in every malformed and refused Redis URL.
const WRONG_PW: &str = "s3cr3tPW";
/// The private PostgreSQL role's password.
const PG_PW: &str = "PgR1ghtPw7";
/// A wrong PostgreSQL password, with a space and a quote so that quoting matters.
const PG_WRONG: &str = "Wr0ng pg'Pw";

/// Every secret and the fragments a half-parsed string would show.
const SECRETS: &[&str] = &[
    REDIS_PW, "R1ght", "RedisPw9", WRONG_PW, "s3cr", "3tPW", PG_PW, "PgR1ght", "ghtPw7", "Wr0ng", "pg'Pw",
    "Wr0ng pg",
];

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} holds the secret {secret:?}:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The `quern` binary
// ---------------------------------------------------------------------------------------------

/// What a finished `quern` printed.
struct Ran {
    status: Option<ExitStatus>,
    out: String,
}

/// How the Redis URL reaches the binary.
#[derive(Clone, Copy, Debug)]
enum Via {
    Flag,
    Env,
}

fn quern(url: &str, via: Via, prefix: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quern"));
    cmd.env_remove("REDIS_URL").env_remove("QUERN_PREFIX");
    match via {
        Via::Flag => cmd.args(["--redis-url", url]),
        Via::Env => cmd.env("REDIS_URL", url),
    };
    cmd.args(["--prefix", prefix])
        .args(args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Reads a child's stdout and stderr on threads, so neither pipe fills up.
struct Capture {
    child: Child,
    readers: Vec<std::thread::JoinHandle<String>>,
}

impl Capture {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("run quern");
        let mut readers = Vec::new();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut pipe in pipes {
            readers.push(std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            }));
        }
        Self { child, readers }
    }

    /// Waits at most `limit` for the exit (then kills), and returns everything printed.
    fn finish(mut self, limit: Duration) -> Ran {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = self
            .readers
            .into_iter()
            .map(|r| r.join().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- stderr ---\n");
        Ran { status, out }
    }

    /// SIGTERM, as an operator stopping the worker would send.
    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

fn run_quern(url: &str, via: Via, prefix: &str, args: &[&str]) -> Ran {
    Capture::spawn(quern(url, via, prefix, args)).finish(Duration::from_secs(30))
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_cli_prints_no_redis_password_whatever_the_url() {
    let redis = RedisServer::start_with_password(REDIS_PW, &[]);
    let port = redis.port();
    let host = format!("127.0.0.1:{port}");
    let closed = closed_port();
    // (url, whether the redacted URL can name the host for certain)
    let urls = [
        (format!("redis://:{WRONG_PW}@{host}"), true),
        (format!("redis://default:{WRONG_PW}@{host}/0"), true),
        // No password at all (redis-rs reads no `password=` parameter): the NOAUTH error of the
        // first command does not name the server.
        (format!("redis://{host}"), false),
        (format!("redis://{host}/?password={WRONG_PW}"), false),
        (format!("redis://:{WRONG_PW}@127.0.0.1:{closed}"), true),
        (format!("rediss://:{WRONG_PW}@{host}"), true),
        (format!("redis://us:er:{WRONG_PW}@{host}"), true),
        (format!("redis://u@ser:{WRONG_PW}@{host}"), true),
        (format!("redis://u%40ser%3A:{WRONG_PW}@{host}"), true),
        ("redis://:s3cr%403tPW@127.0.0.1:1".to_owned(), true),
        (format!("redis://:s3cr#3tPW@{host}"), true),
        (format!("redis://:{WRONG_PW}#x@{host}"), true),
        (format!("redis://:s3cr/3tPW@{host}"), true),
        (format!("redis://:s3cr?3tPW@{host}"), false),
        (format!("redis//:{WRONG_PW}@{host}"), false),
        (format!("redis:/:{WRONG_PW}@{host}"), false),
        (format!("redis://:{WRONG_PW}"), false),
        (format!("redis://{host}:{WRONG_PW}"), false),
        (
            format!("redis+unix:///nonexistent/redis.sock?pass={WRONG_PW}"),
            false,
        ),
    ];
    let prefix = test_support::unique_name("qsecret_cli");
    for (url, names_host) in &urls {
        for via in [Via::Flag, Via::Env] {
            for args in [&["stats"][..], &["run", "--queue", "q"], &["dead", "list"]] {
                let ran = run_quern(url, via, &prefix, args);
                let what = format!("`quern {}` with {url:?} by {via:?}", args.join(" "));
                assert!(
                    ran.status.is_some_and(|s| !s.success()),
                    "{what} should fail: {:?}\n{}",
                    ran.status,
                    ran.out
                );
                assert!(ran.out.contains("error"), "{what} says why:\n{}", ran.out);
                assert_clean(&what, &ran.out);
                if *names_host && url.contains(&host) {
                    assert!(ran.out.contains(&host), "{what} names the server:\n{}", ran.out);
                }
            }
        }
    }
}

/// Waits (bounded) until `check` holds, polling every 50 ms.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_through_a_redis_restart_logs_no_password() {
    let mut redis = RedisServer::start_with_password(REDIS_PW, &[]);
    let url = redis.url_with_password();
    let host = format!("127.0.0.1:{}", redis.port());
    let prefix = test_support::unique_name("qsecret_run");

    // A job nobody registered: the worker (the plain `quern` binary registers no job type)
    // dead-letters it, so there is a dead record to show.
    let enqueued = run_quern(
        &url,
        Via::Flag,
        &prefix,
        &["enqueue", "ghost", r#"{"n":1}"#, "--queue", "q"],
    );
    assert!(enqueued.status.is_some_and(|s| s.success()), "{}", enqueued.out);
    assert_clean("enqueue", &enqueued.out);
    let id = enqueued.out.lines().next().unwrap_or_default().trim().to_owned();
    assert!(!id.is_empty(), "{}", enqueued.out);

    let worker = Capture::spawn(quern(
        &url,
        Via::Env,
        &prefix,
        &["run", "--queue", "q", "--grace-secs", "2"],
    ));
    wait_for(Duration::from_secs(20), "the job is dead-lettered", || {
        let listed = run_quern(&url, Via::Flag, &prefix, &["dead", "list", "--queue", "q"]);
        assert_clean("dead list", &listed.out);
        listed.out.contains(&id)
    });
    for args in [&["dead", "show"][..], &["job", "show"]] {
        let args = [args, &[id.as_str(), "--queue", "q"]].concat();
        let shown = run_quern(&url, Via::Env, &prefix, &args);
        assert!(shown.status.is_some_and(|s| s.success()), "{}", shown.out);
        assert!(shown.out.contains(&id), "{}", shown.out);
        assert_clean(&args.join(" "), &shown.out);
    }

    // Redis goes away under the running worker and comes back (empty: nothing is persisted).
    redis.stop();
    std::thread::sleep(Duration::from_millis(1500));
    redis.restart();
    std::thread::sleep(Duration::from_millis(2500));
    worker.terminate();
    let ran = worker.finish(Duration::from_secs(30));
    assert!(ran.status.is_some(), "the worker stops on SIGTERM:\n{}", ran.out);
    assert_clean("the worker's output", &ran.out);
    assert!(
        ran.out.contains("WARN") && ran.out.contains(&host),
        "the outage was logged, naming the server:\n{}",
        ran.out
    );
    assert!(
        ran.out.contains("reachable again"),
        "the worker reconnected:\n{}",
        ran.out
    );
}

// ---------------------------------------------------------------------------------------------
// IsolatedPg
// ---------------------------------------------------------------------------------------------

/// Connects to the database of its worker's `PgConfig`.
#[derive(Serialize, Deserialize)]
struct Login {}

impl Job for Login {
    const NAME: &'static str = "login";
    type Resources = IsolatedPg;
    fn options() -> JobOptions {
        JobOptions::new()
            .max_attempts(2)
            .backoff(Backoff::Fixed(Duration::from_millis(50)))
    }
    async fn run(self, _: &JobContext, pg: &mut IsolatedPg) -> Result<(), JobError> {
        pg.get().await?;
        Ok(())
    }
}

/// Runs one `Login` job on queue `queue` through a worker configured with `database_url`;
/// returns its id once it is settled (completed or dead).
async fn login_through_worker(storage: &Storage, queue: &str, database_url: &str) -> String {
    let keys = storage.keys(queue);
    let id = Producer::new(storage.clone())
        .enqueue_json(queue, Login::NAME, "{}", None)
        .await
        .unwrap()
        .to_string();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Login>())
        .configure(|c| c.queues = vec![queue.to_owned()])
        .extension(
            PgConfig::new()
                .database_url(database_url)
                .connect_timeout(Duration::from_secs(3)),
        );
    let stop = quern_core::Shutdown::new();
    let running = tokio::spawn(worker.run(quern_worker::cli::shutdown_from(&stop)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = storage.stats(&keys).await.unwrap();
        if s.completed + s.dead >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "job {id} on {queue} settled: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.trigger();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_postgres_login_leaves_no_password_in_logs_records_or_cli() {
    common::capture_logs_at("trace");
    let pg = tokio::task::spawn_blocking(|| {
        let pg = PgServer::start();
        pg.add_password_role("app", PG_PW);
        pg
    })
    .await
    .unwrap();
    let port = pg.port();
    let closed = closed_port();
    let redis_url = test_support::redis_url();
    let prefix = test_support::unique_name("qsecret_pg");
    let storage = Storage::connect(RedisConfig::new(&redis_url).prefix(&prefix))
        .await
        .unwrap();
    let quoted = PG_WRONG.replace('\'', "\\'");

    // The right password works: the failures below are the refused login, not a bad setup.
    let right = format!("postgres://app:{PG_PW}@127.0.0.1:{port}/test");
    login_through_worker(&storage, "right", &right).await;
    assert_eq!(storage.stats(&storage.keys("right")).await.unwrap().completed, 1);

    // (queue, database URL, what the dead record must say)
    let refused = "password authentication failed";
    let cases = [
        (
            "url_form",
            format!("postgres://app:{}@127.0.0.1:{port}/test", "s3cr3tPW"),
            refused,
        ),
        (
            "url_form_encoded",
            format!("postgresql://app:Wr0ng%20pg%27Pw@127.0.0.1:{port}/test?sslmode=disable"),
            refused,
        ),
        (
            "key_value",
            format!("host=127.0.0.1 port={port} user=app password = '{quoted}' dbname=test"),
            refused,
        ),
        (
            "key_value_tabs",
            format!("host=127.0.0.1\tport={port}\nuser=app\tpassword=s3cr3tPW\tdbname=test"),
            refused,
        ),
        (
            "nothing_listens",
            format!("host=127.0.0.1 port={closed} user=app password='{quoted}' dbname=test"),
            "cannot connect",
        ),
        (
            "malformed",
            format!("host=127.0.0.1 port={port} user=app password=Wr0ng pg'Pw dbname=test"),
            "invalid PostgreSQL URL",
        ),
    ];
    for (queue, url, expected) in &cases {
        let id = login_through_worker(&storage, queue, url).await;
        let keys = storage.keys(queue);
        assert_eq!(storage.stats(&keys).await.unwrap().dead, 1, "{queue}");
        // The record exactly as stored in Redis.
        let mut conn = redis::Client::open(storage.config().url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let raw: String = redis::cmd("HGET")
            .arg(&keys.dead_records)
            .arg(&id)
            .query_async(&mut conn)
            .await
            .expect("a dead record");
        assert_clean(&format!("the dead record of {queue}"), &raw);
        let record: DeadRecord = serde_json::from_str(&raw).unwrap();
        let chain = record
            .failures
            .last()
            .map(|f| f.chain.join(": "))
            .unwrap_or_default();
        assert!(chain.contains(expected), "{queue}: {chain}");
        if *expected == refused {
            assert!(
                chain.contains(&format!("127.0.0.1:{port}/test")),
                "{queue}: {chain}"
            );
        }

        for args in [["dead", "show"], ["job", "show"]] {
            let args = [&args[..], &[id.as_str(), "--queue", queue]].concat();
            let shown = run_quern(&redis_url, Via::Flag, &prefix, &args);
            assert!(shown.status.is_some_and(|s| s.success()), "{}", shown.out);
            assert!(shown.out.contains(expected), "{queue}: {}", shown.out);
            assert_clean(&format!("`quern {}` for {queue}", args.join(" ")), &shown.out);
        }
    }

    let logs = common::logged();
    assert!(logs.contains(refused), "the refusals were logged:\n{logs}");
    assert_clean("the logs", &logs);
    for queue in ["right"].into_iter().chain(cases.iter().map(|c| c.0)) {
        storage.delete_queue(&storage.keys(queue)).await.unwrap();
    }
}
