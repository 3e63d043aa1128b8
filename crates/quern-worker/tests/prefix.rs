//! The prefix trap: a producer configured from the environment and the CLI started in the same
//! environment meet on the same keys (`QUERN_PREFIX` is read by both), and the worker's start
//! line says which prefix, queues and concurrency it works with.

use std::process::Command;

use quern_core::{Job, JobContext, JobError, JobOptions};
use quern_redis::{Producer, RedisConfig};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    const NAME: &'static str = "noop";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("prefixed")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_producer_from_the_environment_and_the_cli_share_the_prefix() {
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qt_env");
    let env = |name: &str| match name {
        "REDIS_URL" => Some(url.clone()),
        "QUERN_PREFIX" => Some(prefix.clone()),
        _ => None,
    };
    let config = RedisConfig::from_lookup(env);
    assert_eq!(
        config.prefix, prefix,
        "QUERN_PREFIX is read like the CLI reads it"
    );
    let producer = Producer::connect(config).await.unwrap();
    producer
        .enqueue_many(&[Noop { n: 1 }, Noop { n: 2 }, Noop { n: 3 }])
        .await
        .unwrap();

    // The CLI, started with the same environment and no flags, sees those jobs.
    let out = Command::new(env!("CARGO_BIN_EXE_quern"))
        .args(["stats", "--json"])
        .env("REDIS_URL", &url)
        .env("QUERN_PREFIX", &prefix)
        .env("RUST_LOG", "error")
        .output()
        .expect("run quern");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json is JSON");
    let queues = stats["queues"].as_array().expect("a list of queues");
    assert_eq!(queues.len(), 1, "{stats}");
    assert_eq!(
        (queues[0]["queue"].as_str(), queues[0]["pending"].as_u64()),
        (Some("prefixed"), Some(3))
    );

    // A worker's start line names the prefix, the queues and the concurrency.
    let mut worker = Command::new(env!("CARGO_BIN_EXE_quern"))
        .args(["run", "--queue", "prefixed", "--concurrency", "3"])
        .env("REDIS_URL", &url)
        .env("QUERN_PREFIX", &prefix)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start quern run");
    let stderr = worker.stderr.take().expect("piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let started = std::time::Instant::now();
    let line = loop {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no start line within 20 s"
        );
        match lines.next() {
            Some(Ok(l)) if l.contains("worker started") => break l,
            Some(_) => continue,
            None => panic!("the worker exited before its start line"),
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    drop(lines);
    let _ = worker.wait();
    for want in [
        format!("prefix \"{prefix}\""),
        "[\"prefixed\"]".to_owned(),
        "concurrency=3".to_owned(),
    ] {
        assert!(line.contains(&want), "the start line shows {want}: {line}");
    }
    let storage = quern_redis::Storage::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .unwrap();
    storage.delete_queue(&storage.keys("prefixed")).await.unwrap();
}
