//! Three worker processes fire a 1 s schedule for 30 s while one of them is SIGKILLed and
//! restarted every few seconds: exactly one job per due time, none missing (counted by the
//! runs' deterministic ids).
mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quern::{Inspector, Storage};

fn spawn(url: &str, prefix: &str) -> Child {
    Command::new(common::example_bin("periodic_worker"))
        .args([
            "--prefix",
            prefix,
            "run",
            "--queue",
            "periodic-idle",
            "--lease-secs",
            "1",
        ])
        .env("REDIS_URL", url)
        .env(
            "RUST_LOG",
            std::env::var("WORKER_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the periodic example worker")
}

/// Due time -> how many jobs carry its id, from the runs waiting in queue `beats`.
async fn runs(storage: &Storage) -> BTreeMap<u64, u32> {
    let jobs = Inspector::new(storage.clone())
        .queued_jobs("beats", 10_000)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for j in jobs {
        let due: u64 =
            j.id.strip_prefix("cron:beat:")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("a run's id is cron:beat:<ms>, not {}", j.id));
        *out.entry(due).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_killed_in_turn_fire_each_second_exactly_once() {
    common::init_tracing();
    let url = test_support::redis_url();
    let storage = common::storage(&url).await;
    let prefix = storage.config().prefix.clone();
    let mut workers: Vec<Child> = (0..3).map(|_| spawn(&url, &prefix)).collect();
    let started = Instant::now();
    let mut kills = 0;
    let mut victim = 0;
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(2_000 + (kills % 3) * 700)).await;
        workers[victim].kill().unwrap(); // SIGKILL
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = spawn(&url, &prefix);
        victim = (victim + 1) % 3;
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let runs = runs(&storage).await;
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "due times fired more than once: {twice:?}");
    let (first, last) = (*runs.keys().next().unwrap(), *runs.keys().last().unwrap());
    let missing: Vec<u64> = (first / 1000..=last / 1000)
        .map(|s| s * 1000)
        .filter(|t| !runs.contains_key(t))
        .collect();
    eprintln!(
        "periodic chaos: {} runs from {first} to {last}, {kills} workers killed, {} missing",
        runs.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "due times never fired: {missing:?}");
    assert!(
        runs.len() >= 25,
        "about one run a second for 30 s, got {}",
        runs.len()
    );
}
