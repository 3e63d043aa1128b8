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
    assert_eq!(cols, vec!["admin", "0", "0", "0", "0", "3", "0", "3"], "{line}");

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
