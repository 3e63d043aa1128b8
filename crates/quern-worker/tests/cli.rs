//! The `quern` admin binary against real Redis: stats, enqueue, dead …, job show.

use std::process::{Command, Output};
use std::time::Duration;

use quern_core::{Job, JobContext, JobError, JobOptions};
use quern_redis::{Producer, RedisConfig, Storage};
use quern_worker::{Registry, Worker};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Doomed {
    n: u64,
}

impl Job for Doomed {
    const NAME: &'static str = "doomed";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("admin")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Err(
            JobError::permanent(std::io::Error::other(format!("order {} was cancelled", self.n)))
                .context("charging the card"),
        )
    }
}

fn quern(url: &str, prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quern"))
        .args(["--redis-url", url, "--prefix", prefix])
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run quern")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn wait_dead(storage: &Storage, n: u64) {
    let keys = storage.keys("admin");
    for _ in 0..2000 {
        if storage.stats(&keys).await.unwrap().dead == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} dead jobs never appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_show_and_act_on_dead_jobs() {
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qcli");
    let storage = Storage::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .unwrap();
    let keys = storage.keys("admin");
    let producer = Producer::new(storage.clone());
    let first = producer.enqueue(&Doomed { n: 1 }).await.unwrap().to_string();
    let second = producer.enqueue(&Doomed { n: 2 }).await.unwrap().to_string();
    let third = producer.enqueue(&Doomed { n: 3 }).await.unwrap().to_string();

    let stop = quern_core::Shutdown::new();
    let worker = Worker::new(storage.clone(), Registry::new().register::<Doomed>());
    let running = tokio::spawn(worker.run(quern_worker::cli::shutdown_from(&stop)));
    wait_dead(&storage, 3).await;
    stop.trigger();
    running.await.unwrap().unwrap();

    let out = quern(&url, &prefix, &["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("admin"))
        .unwrap()
        .to_owned();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        vec!["admin", "0", "0", "0", "0", "3", "0", "3", "0"],
        "{line}"
    );

    let out = quern(&url, &prefix, &["dead", "list"]);
    let list = stdout(&out);
    assert!(
        list.contains(&first) && list.contains("permanent failure"),
        "{list}"
    );

    let out = quern(&url, &prefix, &["dead", "show", &first]);
    let show = stdout(&out);
    assert!(show.contains("reason:   permanent failure"), "{show}");
    assert!(show.contains("charging the card"), "{show}");
    assert!(show.contains("caused by: order 1 was cancelled"), "{show}");
    assert!(
        show.contains(r#""payload":{"n":1}"#),
        "the job itself is shown: {show}"
    );

    let out = quern(&url, &prefix, &["job", "show", &second]);
    assert!(stdout(&out).contains("state:    dead"), "{}", stdout(&out));

    let out = quern(&url, &prefix, &["dead", "retry", &first]);
    assert!(
        out.status.success() && stdout(&out).contains("is back in queue admin"),
        "{}",
        stderr(&out)
    );
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.dead), (1, 2));
    let out = quern(&url, &prefix, &["job", "show", &first]);
    assert!(stdout(&out).contains("state:    pending"), "{}", stdout(&out));
    // A fresh set of attempts: `attempt` is absent, which means 1.
    assert!(!stdout(&out).contains(r#""attempt":"#), "{}", stdout(&out));

    let out = quern(&url, &prefix, &["dead", "delete", &second]);
    assert!(out.status.success());
    let out = quern(&url, &prefix, &["dead", "show", &second]);
    assert!(
        !out.status.success() && stderr(&out).contains("no dead job"),
        "{}",
        stderr(&out)
    );

    // Without --yes, purge only says what it would delete, and deletes nothing.
    let out = quern(&url, &prefix, &["dead", "purge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("would delete 1 dead job(s) of every queue"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        storage.stats(&keys).await.unwrap().dead,
        1,
        "nothing deleted without --yes"
    );
    let out = quern(&url, &prefix, &["dead", "purge", "--yes"]);
    assert!(stdout(&out).contains("purged 1 dead job(s)"), "{}", stdout(&out));
    let out = quern(&url, &prefix, &["job", "show", &third]);
    assert!(!out.status.success());
    assert_eq!(storage.stats(&keys).await.unwrap().dead, 0);
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test]
async fn enqueue_refuses_invalid_json_with_its_position_and_writes_nothing() {
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qcli");
    let storage = Storage::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .unwrap();
    let keys = storage.keys("admin");

    let out = quern(
        &url,
        &prefix,
        &["enqueue", "doomed", r#"{"n": 1,, "x": 2}"#, "--queue", "admin"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid JSON payload, nothing was enqueued"),
        "{err}"
    );
    assert!(
        err.contains("key must be a string at line 1 column 9 (byte 8 of 17)"),
        "{err}"
    );
    assert!(err.contains(r#"{"n": 1,<<HERE>>, "x": 2}"#), "{err}");
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.scheduled), (0, 0));

    let out = quern(
        &url,
        &prefix,
        &["enqueue", "doomed", r#"{"n": 1}"#, "--queue", "admin"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(storage.stats(&keys).await.unwrap().pending, 1);
    let out = quern(
        &url,
        &prefix,
        &[
            "enqueue",
            "doomed",
            r#"{"n": 2}"#,
            "--queue",
            "admin",
            "--delay-ms",
            "60000",
        ],
    );
    assert!(out.status.success());
    assert_eq!(storage.stats(&keys).await.unwrap().scheduled, 1);
    storage.delete_queue(&keys).await.unwrap();
}

#[test]
fn an_unreachable_redis_is_named_with_its_password_redacted() {
    let out = quern("redis://:hunter2@127.0.0.1:1", "x", &["stats"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect to Redis at redis://:***@127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// `quern stats | head -0`: the reader is gone before the first line; the command ends quietly.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let url = test_support::redis_url();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_quern"))
        .args([
            "--redis-url",
            &url,
            "--prefix",
            &test_support::unique_name("qt_pipe"),
            "stats",
        ])
        .env("RUST_LOG", "error")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run quern");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "no panic on a closed pipe: {stderr}"
    );
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
}

#[derive(Serialize, Deserialize)]
struct AddNumbers {
    a: i64,
    b: i64,
}

impl Job for AddNumbers {
    const NAME: &'static str = "add_numbers";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("math")
            .keep_result(Duration::from_secs(600))
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        ctx.set_result(&(self.a + self.b))
    }
}

/// A worker binary's `enqueue`, in process: it knows its job types.
async fn enqueue_here(url: &str, prefix: &str, args: &[&str]) -> std::process::ExitCode {
    use clap::Parser;
    let mut argv = vec!["quern", "--redis-url", url, "--prefix", prefix, "enqueue"];
    argv.extend_from_slice(args);
    let cli = quern_worker::cli::Cli::parse_from(argv);
    let registry = Registry::new().register::<AddNumbers>().register::<Doomed>();
    quern_worker::cli::execute(cli, registry, |w, _| w, std::future::ready(()))
        .await
        .expect("the command runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_binary_refuses_unknown_jobs_and_payloads_of_the_wrong_shape() {
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qcli_enq");
    let storage = Storage::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .unwrap();
    let math = storage.keys("math");
    let default = storage.keys("default");
    use std::process::ExitCode;
    // A typo: refused, nothing written anywhere.
    assert_eq!(
        enqueue_here(&url, &prefix, &["add_number", r#"{"a":1,"b":2}"#]).await,
        ExitCode::from(2)
    );
    // The right name, a payload of the wrong shape: refused.
    assert_eq!(
        enqueue_here(&url, &prefix, &["add_numbers", r#"{"a":1,"b":"two"}"#]).await,
        ExitCode::from(2)
    );
    assert_eq!(storage.stats(&math).await.unwrap().pending, 0);
    assert_eq!(storage.stats(&default).await.unwrap().pending, 0);
    assert!(
        storage.queues().await.unwrap().is_empty(),
        "no queue was even recorded"
    );
    // A known job goes to its own queue, with the options given.
    assert_eq!(
        enqueue_here(
            &url,
            &prefix,
            &[
                "add_numbers",
                r#"{"a":1,"b":2}"#,
                "--id",
                "sum-1",
                "--max-attempts",
                "2"
            ]
        )
        .await,
        ExitCode::SUCCESS
    );
    assert_eq!(storage.stats(&math).await.unwrap().pending, 1);
    let inspector = quern_redis::Inspector::new(storage.clone());
    let info = inspector.find_job("sum-1", None).await.unwrap().unwrap();
    assert_eq!(info.queue, "math");
    assert!(info.envelope.unwrap().contains(r#""max_attempts":2"#));
    // The same id again: nothing more.
    assert_eq!(
        enqueue_here(
            &url,
            &prefix,
            &["add_numbers", r#"{"a":1,"b":2}"#, "--id", "sum-1"]
        )
        .await,
        ExitCode::SUCCESS
    );
    assert_eq!(storage.stats(&math).await.unwrap().pending, 1);
    // A bad id: refused with its rule.
    assert_eq!(
        enqueue_here(
            &url,
            &prefix,
            &["add_numbers", r#"{"a":1,"b":2}"#, "--id", "sum 2"]
        )
        .await,
        ExitCode::from(2)
    );

    // The generic binary knows no types: it says it cannot check, and enqueues.
    let out = quern(&url, &prefix, &["enqueue", "add_number", r#"{"a":1}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot check the job name"),
        "{}",
        stderr(&out)
    );
    for keys in [math, default] {
        storage.delete_queue(&keys).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_show_cancel_and_queue_pause_resume() {
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qcli_ctl");
    let storage = Storage::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .unwrap();
    let producer = Producer::new(storage.clone());
    let math = storage.keys("math");

    // Pause: an unknown queue is refused; a known one paused, shown in stats, resumed.
    let out = quern(&url, &prefix, &["queue", "pause", "math"]);
    assert_eq!(out.status.code(), Some(1), "unknown queue: {}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown queue \"math\""),
        "{}",
        stderr(&out)
    );
    let pending = producer.enqueue(&AddNumbers { a: 1, b: 1 }).await.unwrap();
    let out = quern(&url, &prefix, &["queue", "pause", "math"]);
    assert!(
        out.status.success() && stdout(&out).contains("paused"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&quern(&url, &prefix, &["stats"])).contains("math (paused)"));
    let out = quern(&url, &prefix, &["queue", "resume", "math"]);
    assert!(out.status.success() && stdout(&out).contains("resumed"));
    assert!(!stdout(&quern(&url, &prefix, &["stats"])).contains("(paused)"));

    // Cancel a pending job: removed; cancelling it again or an unknown id fails with 1.
    let out = quern(&url, &prefix, &["job", "cancel", pending.as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("will never run"), "{}", stdout(&out));
    let out = quern(&url, &prefix, &["job", "show", pending.as_str()]);
    assert!(stdout(&out).contains("state:    cancelled"), "{}", stdout(&out));
    assert_eq!(
        quern(&url, &prefix, &["job", "cancel", pending.as_str()])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        quern(&url, &prefix, &["job", "cancel", "nope"]).status.code(),
        Some(1)
    );
    assert_eq!(storage.stats(&math).await.unwrap().pending, 0);

    // A job that ran: its state, attempt, times and result.
    let done = producer.enqueue(&AddNumbers { a: 40, b: 2 }).await.unwrap();
    let stop = quern_core::Shutdown::new();
    let events = quern_core::Events::new(64);
    let mut rx = events.subscribe();
    let worker = Worker::new(storage.clone(), Registry::new().register::<AddNumbers>()).events(events);
    let running = tokio::spawn(worker.run(quern_worker::cli::shutdown_from(&stop)));
    tokio::time::timeout(Duration::from_secs(20), async {
        while rx.recv().await.unwrap().kind != quern_core::EventKind::Succeeded {}
    })
    .await
    .expect("the job completes");
    stop.trigger();
    running.await.unwrap().unwrap();
    let out = quern(&url, &prefix, &["job", "show", done.as_str()]);
    let text = stdout(&out);
    for line in [
        "state:    completed",
        "attempt:  1",
        "result:   42",
        "finished: 20",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    storage.delete_queue(&math).await.unwrap();
}
