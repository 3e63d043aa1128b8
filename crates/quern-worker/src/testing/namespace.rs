//! [`Namespace`]: a key prefix of a test's own on a real Redis, with what a test needs around it.

use std::sync::Arc;
use std::time::Duration;

use quern_core::{Job, JobId, ManualClock};
use quern_redis::keys::queues_key;
use quern_redis::{Inspector, Producer, QueueKeys, RedisConfig, Storage, StorageError};

use super::perform::{Performed, Performer};
use crate::registry::Registry;
use crate::worker::Worker;

/// How the namespace builds each worker (see [`Namespace::configure_worker`]).
type Configure = Arc<dyn Fn(Worker<Storage>) -> Worker<Storage> + Send + Sync>;

/// One test's own corner of a real Redis: every key under a prefix no other test uses
/// (`quern-test-<random>`), so tests run in parallel on one server, and a
/// [`ManualClock`] that every part of it reads "now" from, so delayed jobs and retries become
/// due when the test says so.
///
/// Its [`producer`](Self::producer) writes to the namespace, [`worker`](Self::worker) builds a
/// real [`Worker`] on it, [`drain`](Self::drain) runs one until nothing is due, and the
/// `enqueued`/`assert_*` methods read back what waits. Dropping it deletes the keys of every
/// queue it used (the registry's, and any a job was enqueued to); per-job records (kept
/// results, cancel requests) are left to expire on their own, as they do in production.
///
/// Which Redis: [`redis_url`](super::redis_url) — `REDIS_URL`, else the local server, else a
/// private `redis-server` started for the test process.
pub struct Namespace {
    prefix: String,
    url: String,
    storage: Storage,
    producer: Producer,
    clock: ManualClock,
    registry: Registry,
    configure: Option<Configure>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("prefix", &self.prefix)
            .field("storage", &self.storage)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// A new namespace for the job types of `registry`, on the shared test Redis, with a
    /// manual clock standing at the system's time now.
    ///
    /// # Panics
    /// When no Redis can be found or started, or the connection fails: the message says why
    /// and what to do.
    pub async fn new(registry: Registry) -> Self {
        match Self::try_new(registry).await {
            Ok(ns) => ns,
            Err(e) => panic!(
                "quern::testing: cannot connect to the test Redis: {}",
                quern_core::ErrorChain::of(&e)
            ),
        }
    }

    /// [`new`](Self::new), returning a connection error instead of panicking.
    pub async fn try_new(registry: Registry) -> Result<Self, StorageError> {
        // Finding (or starting) a server blocks for a moment, once per process.
        let url = tokio::task::spawn_blocking(super::redis_url)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        Self::on(&url, registry).await
    }

    /// A new namespace on the Redis at `url`.
    pub async fn on(url: &str, registry: Registry) -> Result<Self, StorageError> {
        let prefix = format!("quern-test-{}", unique_suffix());
        let clock = ManualClock::starting_now();
        let storage = Storage::connect(RedisConfig::new(url).prefix(prefix.clone()))
            .await?
            .with_clock(clock.clock());
        Ok(Self {
            producer: Producer::new(storage.clone()),
            prefix,
            url: url.to_owned(),
            storage,
            clock,
            registry,
            configure: None,
        })
    }

    /// Has every worker of this namespace (those of [`worker`](Self::worker),
    /// [`drain`](Self::drain) and [`perform`](Self::perform)) built through `f`: the
    /// application's own worker setup — extensions (a `PgConfig` for a test database),
    /// middleware, settings.
    #[must_use]
    pub fn configure_worker(
        mut self,
        f: impl Fn(Worker<Storage>) -> Worker<Storage> + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(f));
        self
    }

    /// The key prefix, unique to this namespace.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis settings of this namespace (its URL and prefix), for application code that
    /// connects by itself. What it connects reads the system clock, not [`clock`](Self::clock).
    pub fn redis_config(&self) -> RedisConfig {
        RedisConfig::new(&self.url).prefix(self.prefix.clone())
    }

    /// The storage, reading "now" from [`clock`](Self::clock).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// A producer writing to this namespace; `enqueue_in` counts from [`clock`](Self::clock).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The typed admin API on this namespace.
    pub fn inspector(&self) -> Inspector {
        Inspector::new(self.storage.clone())
    }

    /// The clock of the namespace's producer, storage and workers: move it forward and
    /// [`drain`](Self::drain) to run what became due.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The job types this namespace's workers run.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A real worker on this namespace: its registry, its clock, its producer as an extension
    /// (for resources that enqueue follow-up jobs), then whatever
    /// [`configure_worker`](Self::configure_worker) adds. Run it as in production, with
    /// [`Worker::run`].
    pub fn worker(&self) -> Worker<Storage> {
        let worker = Worker::new(self.storage.clone(), self.registry.clone())
            .clock(self.clock.clock())
            .extension(self.producer.clone())
            .configure(|c| {
                // A test waits for a hung job 5 s, not the 30 s of production.
                c.grace = Duration::from_secs(5);
                // An idle claim returns after `block`: 100 ms keeps drains quick.
                c.block = Duration::from_millis(100);
            });
        match &self.configure {
            Some(f) => f(worker),
            None => worker,
        }
    }

    /// Runs `job` once through the executor of [`worker`](Self::worker) — its options,
    /// extensions, middleware and clock — without enqueueing it. See [`Performer`].
    pub async fn perform<J: Job>(&self, job: &J) -> Performed {
        Performer::of(&self.worker()).perform(job).await
    }

    /// Enqueues `job` with the namespace's producer.
    ///
    /// # Panics
    /// When Redis refuses it (the payload is too large, say), with the error chain.
    pub async fn enqueue<J: Job>(&self, job: &J) -> JobId {
        match self.producer.enqueue(job).await {
            Ok(id) => id,
            Err(e) => panic!(
                "quern::testing: enqueueing {:?}: {}",
                J::NAME,
                quern_core::ErrorChain::of(&e)
            ),
        }
    }

    /// The queues this namespace knows: those of its registry and any a job was enqueued to.
    pub(super) async fn queues(&self) -> Vec<String> {
        let mut queues = self.registry.queues();
        if let Ok(seen) = self.storage.queues().await {
            queues.extend(seen);
        }
        queues.sort();
        queues.dedup();
        queues
    }

    /// Deletes every key of this namespace now (dropping it does the same).
    pub async fn cleanup(&self) {
        for queue in self.queues().await {
            let _ = self.storage.delete_queue(&self.storage.keys(&queue)).await;
        }
    }
}

impl Drop for Namespace {
    /// Deletes the namespace's keys: the keys of every queue of the registry and of the
    /// queues set, and the set itself. A blocking connection on a thread of its own, so it
    /// works from any runtime, and while a failed test unwinds.
    fn drop(&mut self) {
        let url = self.url.clone();
        let prefix = self.prefix.clone();
        let queues = self.registry.queues();
        let cleaned = std::thread::spawn(move || {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let set = queues_key(&prefix);
            let mut all: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query(&mut conn).ok()?;
            all.extend(queues);
            let mut keys = vec![set];
            for queue in &all {
                keys.extend(QueueKeys::new(&prefix, queue).all().map(str::to_owned));
            }
            redis::cmd("UNLINK").arg(&keys).exec(&mut conn).ok()
        });
        let _ = cleaned.join();
    }
}

/// Twelve base-36 characters from std's randomly keyed hasher, the process id and a counter.
fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    let mut v = hasher.finish();
    (0..12)
        .map(|_| {
            let d = (v % 36) as u32;
            v /= 36;
            char::from_digit(d, 36).unwrap_or('0')
        })
        .collect()
}
