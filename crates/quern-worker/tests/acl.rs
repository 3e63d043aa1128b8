//! Least-privilege Redis users, on a private server: a producer, a worker and the admin commands
//! each run with only the rules of `quern_redis::acl` (the strings `docs/security.md` shows),
//! and the rules are tight: each user is refused what another role needs.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{capture_logs, logged, quern, wait_until};
use quern_core::{Backoff, Job, JobContext, JobError, JobOptions, JobState, Shutdown};
use quern_redis::{Inspector, Producer, RedisConfig, RetryDead, Storage, acl};
use quern_worker::{Registry, Worker};
use serde::{Deserialize, Serialize};
use test_support::RedisServer;

const LIMIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "acl-test-pw";
const QUEUE: &str = "acl";

/// How many times each job ran to success, by its number.
static RAN: Mutex<Option<HashMap<u64, u32>>> = Mutex::new(None);
static STUCK_STARTED: AtomicBool = AtomicBool::new(false);

fn record(n: u64) {
    *RAN.lock().unwrap().get_or_insert_default().entry(n).or_default() += 1;
}

fn ran() -> HashMap<u64, u32> {
    RAN.lock().unwrap().clone().unwrap_or_default()
}

fn options() -> JobOptions {
    JobOptions::new()
        .queue(QUEUE)
        .max_attempts(3)
        .backoff(Backoff::Fixed(Duration::from_millis(50)))
}

#[derive(Serialize, Deserialize)]
struct Quick {
    n: u64,
}

impl Job for Quick {
    const NAME: &'static str = "quick";
    type Resources = ();
    fn options() -> JobOptions {
        options()
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        record(self.n);
        Ok(())
    }
}

/// Fails its first attempt: retried (`retry.lua`, then promoted back by `promote_due.lua`).
#[derive(Serialize, Deserialize)]
struct Flaky {
    n: u64,
}

impl Job for Flaky {
    const NAME: &'static str = "flaky";
    type Resources = ();
    fn options() -> JobOptions {
        options()
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        if ctx.attempt == 1 {
            return Err(JobError::msg("first attempts fail"));
        }
        record(self.n);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Doomed {}

impl Job for Doomed {
    const NAME: &'static str = "doomed";
    type Resources = ();
    fn options() -> JobOptions {
        options()
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Err(JobError::permanent(std::io::Error::other("never")))
    }
}

/// Runs for over twice the lease: it finishes once only if its lease is renewed (`XCLAIM`).
#[derive(Serialize, Deserialize)]
struct Slow {
    n: u64,
}

impl Job for Slow {
    const NAME: &'static str = "slow";
    type Resources = ();
    fn options() -> JobOptions {
        options()
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        tokio::time::sleep(LEASE * 5 / 2).await;
        record(self.n);
        Ok(())
    }
}

/// Still running at shutdown: cancelled after the grace period and released (`release.lua`).
#[derive(Serialize, Deserialize)]
struct Stuck {}

impl Job for Stuck {
    const NAME: &'static str = "stuck";
    type Resources = ();
    fn options() -> JobOptions {
        options()
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        STUCK_STARTED.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(())
    }
}

const LEASE: Duration = Duration::from_millis(1200);

fn url(redis: &RedisServer, user: &str) -> String {
    format!("redis://{user}:{PASSWORD}@127.0.0.1:{}", redis.port())
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `ACL SETUSER <user> on >PASSWORD <rules>`, as the docs say.
async fn set_user(conn: &mut redis::aio::MultiplexedConnection, user: &str, rules: &str) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user).arg("on").arg(format!(">{PASSWORD}"));
    for rule in rules.split_whitespace() {
        cmd.arg(rule);
    }
    let () = cmd.query_async(conn).await.unwrap();
}

/// The error code of `cmd` sent by `conn`'s user: `NOPERM` when the ACL refuses it.
async fn refused(conn: &mut redis::aio::MultiplexedConnection, cmd: &mut redis::Cmd) -> Option<String> {
    let res: redis::RedisResult<redis::Value> = cmd.query_async(conn).await;
    res.err().and_then(|e| e.code().map(str::to_owned))
}

async fn storage(url: String, prefix: &str) -> Storage {
    Storage::connect(RedisConfig::new(url).prefix(prefix))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producer_worker_and_admin_each_work_with_only_their_acl_rules() {
    capture_logs();
    let redis = RedisServer::start();
    let prefix = test_support::unique_name("acl");
    let mut root = raw(&redis.url()).await;
    for (user, commands) in [
        ("quern-producer", acl::PRODUCER),
        ("quern-worker", acl::WORKER),
        ("quern-admin", acl::ADMIN),
    ] {
        set_user(&mut root, user, &acl::rules(&prefix, commands)).await;
    }
    set_user(&mut root, "blind", &acl::rules(&prefix, "+xadd")).await;
    let keys = quern_redis::QueueKeys::new(&prefix, QUEUE);

    // The producer: enqueue, enqueue_many, enqueue_in, and the start-up check (INFO).
    let producer = Producer::new(storage(url(&redis, "quern-producer"), &prefix).await);
    producer.enqueue(&Quick { n: 1 }).await.unwrap();
    let many: Vec<Quick> = (2..=6).map(|n| Quick { n }).collect();
    producer.enqueue_many(&many).await.unwrap();
    producer
        .enqueue_in(&Quick { n: 7 }, Duration::from_millis(300))
        .await
        .unwrap();
    producer.enqueue(&Flaky { n: 8 }).await.unwrap();
    producer.enqueue(&Slow { n: 9 }).await.unwrap();
    let dead_a = producer.enqueue(&Doomed {}).await.unwrap().to_string();
    let dead_b = producer.enqueue(&Doomed {}).await.unwrap().to_string();

    // The worker, through a full run.
    let worker_storage = storage(url(&redis, "quern-worker"), &prefix).await;
    let admin = Inspector::new(storage(url(&redis, "quern-admin"), &prefix).await);
    let stop = Shutdown::new();
    let registry = Registry::new()
        .register::<Quick>()
        .register::<Flaky>()
        .register::<Doomed>()
        .register::<Slow>()
        .register::<Stuck>();
    let worker = Worker::new(worker_storage.clone(), registry).configure(|c| {
        c.queues = vec![QUEUE.into()];
        c.lease = LEASE;
        c.grace = Duration::from_millis(100);
        c.block = Duration::from_millis(200);
    });
    let running = tokio::spawn(worker.run(quern_worker::cli::shutdown_from(&stop)));
    wait_until(LIMIT, "every job to finish", || async {
        ran().len() == 9 && admin.stats(QUEUE).await.unwrap().dead == 2
    })
    .await;
    producer.enqueue(&Stuck {}).await.unwrap();
    wait_until(LIMIT, "the stuck job to start", || async {
        STUCK_STARTED.load(Ordering::SeqCst)
    })
    .await;
    // Let the settler trim what was completed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.trigger();
    let report = tokio::time::timeout(LIMIT, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.released, 1, "{report:?}");
    assert_eq!((report.succeeded, report.dead), (9, 2), "{report:?}");
    for (n, times) in ran() {
        assert_eq!(times, 1, "job {n} ran once: its lease was renewed, never lost");
    }

    // The admin commands, through the Inspector.
    assert_eq!(admin.queues().await.unwrap(), vec![QUEUE.to_owned()]);
    let stats = admin.stats(QUEUE).await.unwrap();
    assert_eq!(
        (stats.completed, stats.dead, stats.pending),
        (9, 2, 1),
        "{stats:?}"
    );
    assert_eq!(admin.dead_jobs(QUEUE, 10).await.unwrap().len(), 2);
    assert!(admin.dead_job(&dead_a, None).await.unwrap().is_some());
    let found = admin.find_job(&dead_a, None).await.unwrap().unwrap();
    assert_eq!(found.state, JobState::Dead);
    let pending = producer.enqueue(&Quick { n: 10 }).await.unwrap().to_string();
    let found = admin.find_job(&pending, None).await.unwrap().unwrap();
    assert_eq!(found.state, JobState::Pending);
    assert!(matches!(
        admin.retry_dead(&dead_a, None).await.unwrap(),
        RetryDead::Queued { .. }
    ));
    assert!(admin.delete_dead(&dead_b, None).await.unwrap());
    assert_eq!(admin.stats(QUEUE).await.unwrap().dead, 0);
    assert_eq!(
        admin.server_health().await.maxmemory_policy.as_deref(),
        Some("noeviction")
    );
    // And the CLI with the admin user.
    let admin_url = url(&redis, "quern-admin");
    for args in [&["stats"][..], &["dead", "list"], &["job", "show", &pending]] {
        let out = quern(&admin_url, &prefix, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.to_lowercase().contains("noperm"),
            "{args:?}: {out:?}"
        );
    }

    // Nothing any of them sent was refused.
    let logs = logged().to_lowercase();
    assert!(!logs.contains("noperm") && !logs.contains("permission"), "{logs}");

    // The rules are tight.
    let mut producer_conn = raw(&url(&redis, "quern-producer")).await;
    let mut worker_conn = raw(&url(&redis, "quern-worker")).await;
    let mut admin_conn = raw(&admin_url).await;
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg("workers")
        .arg("thief")
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(">");
    let noperm = Some("NOPERM".to_owned());
    assert_eq!(
        refused(&mut producer_conn, &mut read).await,
        noperm,
        "producer reads jobs"
    );
    assert_eq!(
        refused(&mut admin_conn, &mut read).await,
        noperm,
        "admin reads jobs"
    );
    let mut ack = redis::cmd("XACK");
    ack.arg(&keys.stream).arg("workers").arg("1-0");
    assert_eq!(
        refused(&mut producer_conn, &mut ack).await,
        noperm,
        "producer acks"
    );
    let mut outside = redis::cmd("XADD");
    outside.arg("elsewhere:stream").arg("*").arg("e").arg("{}");
    assert_eq!(
        refused(&mut producer_conn, &mut outside).await,
        noperm,
        "keys outside the prefix"
    );
    let mut unlink = redis::cmd("UNLINK");
    unlink.arg(&keys.stream);
    assert_eq!(
        refused(&mut worker_conn, &mut unlink).await,
        noperm,
        "worker deletes queues"
    );
    assert_eq!(
        refused(&mut producer_conn, &mut unlink).await,
        noperm,
        "producer deletes queues"
    );
    let mut flush = redis::cmd("FLUSHALL");
    assert_eq!(
        refused(&mut admin_conn, &mut flush).await,
        noperm,
        "admin flushes"
    );
    let mut config = redis::cmd("CONFIG");
    config.arg("SET").arg("maxmemory-policy").arg("allkeys-lru");
    assert_eq!(
        refused(&mut worker_conn, &mut config).await,
        noperm,
        "worker configures"
    );

    // A user allowed neither INFO nor CONFIG: the memory check says so, and fails nothing.
    let blind = storage(url(&redis, "blind"), &prefix).await;
    let health = blind.server_health().await;
    assert!(
        health
            .unavailable
            .as_deref()
            .is_some_and(|why| why.to_lowercase().contains("noperm")),
        "{health:?}"
    );
    assert!(!health.evicts() && health.warning().is_some());
}
