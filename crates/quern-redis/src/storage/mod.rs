//! [`Storage`], all of Quern's Redis I/O: producer, worker and admin operations on a queue's keys.
//!
//! # Layout
//! - this file — [`Storage`] and [`RedisConfig`]: connecting, keys, running scripts.
//! - `enqueue` — [`push`](Storage::push) and [`schedule`](Storage::schedule).
//! - `claim` — the consumer group and [`read`](Storage::read), over a [`Reader`].
//! - `settle` — [`settle`](Storage::settle) finished executions: completed (counted once however
//!   often replayed), retried, snoozed or dead-lettered.
//! - `lease` — renewing, requeueing expired and releasing leases.
//! - `promote` — moving due delayed jobs and retries to the stream, and the wake-up.
//! - `trim` — removing acknowledged entries: a [`TrimReport`](quern_core::TrimReport).
//! - `health` — [`server_health`](Storage::server_health): the eviction policy and memory
//!   limits that can lose jobs or refuse enqueues, and the start-up warning about them.
//! - `admin` — queues, [`QueueStats`](quern_core::QueueStats), deleting a queue (the typed admin
//!   API over them is [`Inspector`](crate::Inspector)).
//! - `broker` — `impl Broker for Storage`: the worker's interface, mapped onto the above.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quern_core::{Clock, redact_url};
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::StorageError;
use crate::keys::QueueKeys;
use crate::resp::{Addr, Pusher, Target};
use crate::scripts;

mod admin;
mod broker;
mod claim;
mod control;
mod enqueue;
mod health;
mod lease;
mod periodic;
mod promote;
mod settle;
mod trim;

pub use crate::resp::Reader;
pub use control::{CancelAt, CancelDone};
pub use enqueue::IdPush;
pub use health::{NOEVICTION, ServerHealth};
pub use periodic::{Fire, PeriodicState};

/// The environment variable holding the Redis URL.
pub const ENV_REDIS_URL: &str = "REDIS_URL";
/// The environment variable holding the key prefix.
pub const ENV_PREFIX: &str = "QUERN_PREFIX";
/// The Redis URL when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The key prefix when none is given.
pub const DEFAULT_PREFIX: &str = "quern";

/// How Quern talks to Redis.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key (default `quern`): lets several applications, or tests, share a server.
    pub prefix: String,
    /// Payloads larger than this are refused at enqueue and dead-lettered at the worker.
    pub max_payload_bytes: usize,
    /// How long one command may take before it counts as failed.
    pub response_timeout: Duration,
    /// How long connecting may take.
    pub connection_timeout: Duration,
}

impl RedisConfig {
    /// Defaults for `url`: prefix `quern`, 1 MiB payloads, 5 s response and connect timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.into(),
            max_payload_bytes: quern_core::MAX_PAYLOAD_BYTES,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
        }
    }

    /// The settings every entry point reads — this, the CLI (`--redis-url`, `--prefix`) and the
    /// examples — from the same variables: [`ENV_REDIS_URL`] (default [`DEFAULT_URL`]) and
    /// [`ENV_PREFIX`] (default [`DEFAULT_PREFIX`]). A producer and a worker started in the same
    /// environment therefore always meet on the same keys.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read through `lookup` (for tests, or a
    /// configuration source of the application's own). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let url = get(ENV_REDIS_URL).unwrap_or_else(|| DEFAULT_URL.to_owned());
        let prefix = get(ENV_PREFIX).unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        Self::new(url).prefix(prefix)
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the payload limit.
    #[must_use]
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.max_payload_bytes = n;
        self
    }

    /// The URL with its password redacted, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Quern's handle on Redis. Cheap to clone: clones share one multiplexed connection, which
/// reconnects by itself after Redis restarts.
#[derive(Clone)]
pub struct Storage {
    config: Arc<RedisConfig>,
    client: Client,
    conn: ConnectionManager,
    registered: Arc<Mutex<HashSet<String>>>,
    /// Bulk appends over a connection of their own (TCP and Unix sockets only).
    pusher: Option<Arc<tokio::sync::Mutex<Pusher>>>,
    /// Where "now" comes from for dead-letter retention and the producer's delays, so tests
    /// can run them on a [`ManualClock`](quern_core::ManualClock).
    clock: Clock,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("url", &self.config.redacted_url())
            .field("prefix", &self.config.prefix)
            .field("clock", &self.clock)
            .finish()
    }
}

fn manager_config(response_timeout: Option<Duration>, connect: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
}

impl Storage {
    /// Connects, or fails with an error that names the URL (password redacted) and what to do.
    pub async fn connect(config: RedisConfig) -> Result<Self, StorageError> {
        let connect_err = |source| StorageError::Connect {
            url: config.redacted_url(),
            source,
        };
        let client = Client::open(config.url.as_str()).map_err(connect_err)?;
        let cfg = manager_config(Some(config.response_timeout), config.connection_timeout);
        let conn = tokio::time::timeout(
            config.connection_timeout + Duration::from_secs(1),
            client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| {
            connect_err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            )))
        })?
        .map_err(connect_err)?;
        let mut storage = Self {
            config: Arc::new(config),
            client,
            conn,
            registered: Default::default(),
            pusher: None,
            clock: Clock::system(),
        };
        storage.pusher = storage
            .direct_target()
            .map(|t| Arc::new(tokio::sync::Mutex::new(Pusher::new(t))));
        Ok(storage)
    }

    /// Where a connection of Quern's own connects, when the address allows one (not TLS).
    fn direct_target(&self) -> Option<Target> {
        let info = self.client.get_connection_info();
        let addr = Addr::direct(info.addr())?;
        let redis = info.redis_settings();
        Some(Target {
            addr,
            username: redis.username().map(str::to_owned),
            password: redis.password().map(str::to_owned),
            db: redis.db(),
            connect_timeout: self.config.connection_timeout,
            response_timeout: self.config.response_timeout,
        })
    }

    /// The same storage reading "now" from `clock` (the system's clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Where "now" comes from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Where this storage keeps jobs, for logs: the URL (password redacted) and the key prefix.
    pub fn describe(&self) -> String {
        format!("{} (prefix {:?})", self.config.redacted_url(), self.config.prefix)
    }

    /// The keys of `queue`.
    pub fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(&self.config.prefix, queue)
    }

    /// A connection of its own, for blocking reads (`XREADGROUP BLOCK`, `BLPOP`) that must not
    /// hold up other commands. Its response timeout exceeds `block`.
    pub async fn dedicated(&self, block: Duration) -> Result<ConnectionManager, StorageError> {
        let cfg = manager_config(
            Some(block + self.config.response_timeout),
            self.config.connection_timeout,
        );
        self.client
            .get_connection_manager_with_config(cfg)
            .await
            .map_err(|source| StorageError::Connect {
                url: self.config.redacted_url(),
                source,
            })
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs a pipeline of EVALSHA calls; if Redis forgot the scripts (restart, flush), loads them
    /// and runs it once more. Every script Quern pipelines is safe to run twice.
    pub(crate) async fn exec_scripts(
        &self,
        pipe: &redis::Pipeline,
        context: &'static str,
    ) -> Result<(), StorageError> {
        let mut conn = self.conn();
        match pipe.exec_async(&mut conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.load_scripts().await?;
                pipe.exec_async(&mut conn)
                    .await
                    .map_err(StorageError::redis(context))
            }
            other => other.map_err(StorageError::redis(context)),
        }
    }

    /// Loads every script into Redis's script cache.
    pub async fn load_scripts(&self) -> Result<(), StorageError> {
        let mut conn = self.conn();
        for s in scripts::all() {
            s.load_async(&mut conn)
                .await
                .map_err(StorageError::redis("loading scripts"))?;
        }
        Ok(())
    }
}

/// How many entries one bounded script call handles.
pub(crate) const BATCH: usize = 500;

pub(crate) fn script_cmd(
    pipe: &mut redis::Pipeline,
    script: &redis::Script,
    keys: &[&str],
    args: impl FnOnce(&mut redis::Cmd),
) {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    args(&mut cmd);
    pipe.add_command(cmd).ignore();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_gives_the_url_and_the_prefix() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let c = RedisConfig::from_lookup(env(&[("REDIS_URL", "redis://h:1"), ("QUERN_PREFIX", "app")]));
        assert_eq!((c.url.as_str(), c.prefix.as_str()), ("redis://h:1", "app"));
        let c = RedisConfig::from_lookup(env(&[("QUERN_PREFIX", "")]));
        assert_eq!(
            (c.url.as_str(), c.prefix.as_str()),
            (DEFAULT_URL, DEFAULT_PREFIX),
            "empty is unset"
        );
    }
}
