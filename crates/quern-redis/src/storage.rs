//! All of Quern's Redis I/O: producer, worker and admin operations on one queue's keys.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quern_core::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys, entry_ms, parse_entry_id, queues_key};
use crate::reader::{Addr, Pusher, Reader, Target};
use crate::scripts;

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
            prefix: "quern".into(),
            max_payload_bytes: quern_core::MAX_PAYLOAD_BYTES,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
        }
    }

    /// `REDIS_URL`, or `redis://127.0.0.1:6379`.
    pub fn from_env() -> Self {
        Self::new(std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
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

/// One entry read from a queue's stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id: what acks, retries and lease renewals name.
    pub entry_id: String,
    /// The envelope bytes (field `e`), exactly as stored.
    pub envelope: Vec<u8>,
    /// How many times this job's lease expired before (field `r`).
    pub lease_expiries: u32,
    /// When the entry has no `e` field (not written by a Quern producer): all its fields as a
    /// JSON object, so that what was stored is kept in the dead record.
    pub foreign_fields: Option<String>,
}

/// How a finished execution is settled.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Done: remove it.
    Ack {
        /// Stream entry id.
        entry_id: String,
    },
    /// Failed: run again at `due_ms`.
    Retry {
        /// Stream entry id.
        entry_id: String,
        /// Due time, ms since the Unix epoch.
        due_ms: u64,
        /// Envelope of the next attempt.
        envelope: String,
    },
    /// Cannot or may not run again: keep it in the dead set.
    Dead {
        /// Stream entry id.
        entry_id: String,
        /// The job id.
        job_id: String,
        /// The dead record JSON.
        record: String,
    },
}

impl Settle {
    /// The stream entry this settles.
    pub fn entry_id(&self) -> &str {
        match self {
            Settle::Ack { entry_id } | Settle::Retry { entry_id, .. } | Settle::Dead { entry_id, .. } => {
                entry_id
            }
        }
    }
}

/// Dead-letter retention.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DeadRetention {
    /// The most dead jobs kept per queue (default 10,000).
    pub max_count: u64,
    /// The oldest dead job kept (default 30 days).
    pub max_age: Duration,
}

impl Default for DeadRetention {
    fn default() -> Self {
        Self {
            max_count: 10_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting in the queue.
    Pending,
    /// Leased to a worker.
    Running,
    /// Delayed until its due time.
    Scheduled,
    /// Waiting for its next attempt.
    Retrying,
    /// In the dead set.
    Dead,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Scheduled => "scheduled",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
        })
    }
}

/// Counts for one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Ready to run.
    pub pending: u64,
    /// Leased to a worker right now.
    pub running: u64,
    /// Delayed, not yet due.
    pub scheduled: u64,
    /// Waiting for their next attempt.
    pub retrying: u64,
    /// In the dead set.
    pub dead: u64,
    /// Completed since the queue was created.
    pub completed: u64,
    /// Jobs that did not succeed (then retried or dead-lettered) since the queue was created,
    /// counting those that could not start: an envelope or payload that cannot be decoded, or
    /// an unknown job type.
    pub failed: u64,
}

/// What one [`Storage::trim_acked`] did and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrimReport {
    /// Acknowledged entries removed.
    pub trimmed: u64,
    /// The oldest entry leased to a consumer and not yet acknowledged, if any: nothing at or
    /// after it can be trimmed yet.
    pub oldest_leased: Option<String>,
    /// The last entry handed to Quern's consumer group, if any.
    pub last_delivered: Option<String>,
}

impl TrimReport {
    /// How far, in ms of entry time, the oldest leased entry lags behind the last delivered
    /// one: the acknowledged entries between them cannot be trimmed until it settles.
    pub fn held_back_ms(&self) -> u64 {
        match (&self.oldest_leased, &self.last_delivered) {
            (Some(oldest), Some(last)) => entry_ms(last).saturating_sub(entry_ms(oldest)),
            _ => 0,
        }
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
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("url", &self.config.redacted_url())
            .field("prefix", &self.config.prefix)
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

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
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

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Records `queue` in the set of known queues, once per process.
    fn register_pipe(&self, pipe: &mut redis::Pipeline, queue: &str) {
        let mut seen = self.registered.lock().expect("poisoned");
        if !seen.contains(queue) {
            seen.insert(queue.to_owned());
            pipe.cmd("SADD")
                .arg(queues_key(&self.config.prefix))
                .arg(queue)
                .ignore();
        }
    }

    // ----- producer -----

    /// Appends envelopes to the queue's stream in one round trip.
    ///
    /// A batch goes over the storage's own bulk connection when it is free (the commands written
    /// straight into one buffer, the replies checked without being kept), else, like a single
    /// job, through the shared connection.
    pub async fn push(&self, keys: &QueueKeys, envelopes: &[String]) -> Result<(), StorageError> {
        if envelopes.len() > 1
            && let Some(pusher) = &self.pusher
            && let Ok(mut pusher) = pusher.try_lock()
        {
            let register = !self.registered.lock().expect("poisoned").contains(&keys.queue);
            // The set's key is built only when the queue still has to be recorded.
            let set = register.then(|| queues_key(&self.config.prefix));
            let reg = set.as_deref().map(|set| (set, keys.queue.as_str()));
            pusher
                .push(&keys.stream, envelopes, reg)
                .await
                .map_err(StorageError::redis("enqueueing"))?;
            if register {
                self.registered
                    .lock()
                    .expect("poisoned")
                    .insert(keys.queue.clone());
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        self.register_pipe(&mut pipe, &keys.queue);
        for env in envelopes {
            pipe.cmd("XADD")
                .arg(&keys.stream)
                .arg("*")
                .arg("e")
                .arg(env)
                .ignore();
        }
        pipe.exec_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("enqueueing"))
    }

    /// Puts envelopes in the delayed set, each due at its time (ms since epoch), in one round trip.
    pub async fn schedule(&self, keys: &QueueKeys, jobs: &[(u64, String)]) -> Result<(), StorageError> {
        let mut pipe = redis::pipe();
        self.register_pipe(&mut pipe, &keys.queue);
        for (due, env) in jobs {
            script_cmd(
                &mut pipe,
                &scripts::SCHEDULE,
                &[&keys.scheduled, &keys.wake],
                |c| {
                    c.arg(due).arg(env);
                },
            );
        }
        self.exec_scripts(&pipe, "scheduling").await
    }

    /// Runs a pipeline of EVALSHA calls; if Redis forgot the scripts (restart, flush), loads them
    /// and runs it once more. Every script Quern pipelines is safe to run twice.
    async fn exec_scripts(&self, pipe: &redis::Pipeline, context: &'static str) -> Result<(), StorageError> {
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

    // ----- worker -----

    /// Creates the queue's consumer group (and stream) if missing. Jobs enqueued before the group
    /// existed are read too.
    pub async fn ensure_group(&self, keys: &QueueKeys) -> Result<(), StorageError> {
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .exec_async(&mut self.conn())
            .await;
        match res {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(StorageError::redis("creating the consumer group")),
        }
    }

    /// Claims up to `count` new jobs for `consumer`, waiting up to `block` for one to arrive.
    /// Each returned job is leased to `consumer` until acked or its lease expires.
    pub async fn read(
        &self,
        reader: &mut Reader,
        keys: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, StorageError> {
        let block_ms = block.as_millis().max(1) as u64;
        reader
            .read_group(GROUP, consumer, count, block_ms, &keys.stream)
            .await
    }

    /// A connection of its own for claiming jobs ([`read`](Self::read)): over TCP or a Unix
    /// socket it parses replies straight into deliveries; over TLS it goes through redis-rs.
    /// Connects now, so an unreachable server is reported here.
    pub async fn reader(&self, block: Duration) -> Result<Reader, StorageError> {
        let mut reader = match self.direct_target() {
            Some(target) => Reader::direct(target),
            None => Reader::managed(self.dedicated(block).await?),
        };
        reader.connect().await.map_err(|source| StorageError::Connect {
            url: self.config.redacted_url(),
            source,
        })?;
        Ok(reader)
    }

    /// Settles finished executions in one round trip.
    ///
    /// Completed jobs are acknowledged; their entries are deleted now only when `delete_acked` is
    /// set, and otherwise left to [`trim_acked`](Self::trim_acked), which removes them in blocks
    /// for less work in Redis. The worker deletes them at once while a long-leased entry holds
    /// trimming back.
    pub async fn settle(
        &self,
        keys: &QueueKeys,
        ops: &[Settle],
        retention: DeadRetention,
        delete_acked: bool,
    ) -> Result<(), StorageError> {
        let mut pipe = redis::pipe();
        let mut acked: Vec<&str> = Vec::new();
        let now = quern_core::envelope::now_ms();
        for op in ops {
            match op {
                Settle::Ack { entry_id } => acked.push(entry_id),
                Settle::Retry {
                    entry_id,
                    due_ms,
                    envelope,
                } => script_cmd(
                    &mut pipe,
                    &scripts::RETRY,
                    &[&keys.stream, &keys.retry, &keys.wake, &keys.stats],
                    |c| {
                        c.arg(GROUP).arg(entry_id).arg(due_ms).arg(envelope);
                    },
                ),
                Settle::Dead {
                    entry_id,
                    job_id,
                    record,
                } => script_cmd(
                    &mut pipe,
                    &scripts::DEAD_LETTER,
                    &[&keys.stream, &keys.dead, &keys.dead_records, &keys.stats],
                    |c| {
                        c.arg(GROUP)
                            .arg(entry_id)
                            .arg(job_id)
                            .arg(record)
                            .arg(now)
                            .arg(retention.max_count)
                            .arg(now.saturating_sub(retention.max_age.as_millis() as u64));
                    },
                ),
            }
        }
        if !acked.is_empty() {
            pipe.cmd("XACK").arg(&keys.stream).arg(GROUP).arg(&acked).ignore();
            if delete_acked {
                pipe.cmd("XDEL").arg(&keys.stream).arg(&acked).ignore();
            }
            pipe.cmd("HINCRBY")
                .arg(&keys.stats)
                .arg("completed")
                .arg(acked.len())
                .ignore();
        }
        self.exec_scripts(&pipe, "settling jobs").await
    }

    /// Deletes the acknowledged entries at the head of the queue's stream: everything below the
    /// oldest entry some consumer group still holds or has not read. Nothing leased or waiting is
    /// ever removed.
    pub async fn trim_acked(&self, keys: &QueueKeys) -> Result<TrimReport, StorageError> {
        let (trimmed, oldest, last, _, _) = self.trim_script(keys, false, false).await?;
        Ok(TrimReport {
            trimmed,
            oldest_leased: (!oldest.is_empty()).then_some(oldest),
            last_delivered: (!last.is_empty()).then_some(last),
        })
    }

    /// Entries waiting for Quern's group, counted the way Redis 6.2 (no `lag` field) must; `None`
    /// when over 10,000 acknowledged entries are held back. For tests of that path.
    #[doc(hidden)]
    pub async fn waiting_without_lag(&self, keys: &QueueKeys) -> Result<Option<u64>, StorageError> {
        let (_, _, _, waiting, _) = self.trim_script(keys, true, true).await?;
        Ok(u64::try_from(waiting).ok())
    }

    /// Runs `trim_acked.lua`: (trimmed, oldest pending id, last-delivered id, waiting, running).
    async fn trim_script(
        &self,
        keys: &QueueKeys,
        count_waiting: bool,
        without_lag: bool,
    ) -> Result<(u64, String, String, i64, u64), StorageError> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let reply: Result<(u64, String, String, i64, u64), _> = scripts::TRIM_ACKED
            .key(&keys.stream)
            .arg(GROUP)
            .arg(flag(count_waiting))
            .arg(flag(without_lag))
            .invoke_async(&mut self.conn())
            .await;
        reply.map_err(StorageError::redis("trimming acknowledged jobs"))
    }

    /// Renews the leases of `entry_ids` held by `consumer`; returns the ids still leased to it
    /// (an id missing from the answer lost its lease and has been queued again).
    pub async fn renew(
        &self,
        keys: &QueueKeys,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<HashSet<String>, StorageError> {
        if entry_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let claimed: Vec<String> = redis::cmd("XCLAIM")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entry_ids)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("renewing leases"))?;
        Ok(claimed.into_iter().collect())
    }

    /// Puts jobs whose lease expired back in the queue; returns how many.
    pub async fn requeue_expired(&self, keys: &QueueKeys, lease: Duration) -> Result<usize, StorageError> {
        let mut total = 0;
        loop {
            let n: usize = scripts::REQUEUE_EXPIRED
                .key(&keys.stream)
                .arg(GROUP)
                .arg(lease.as_millis() as u64)
                .arg(BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("requeueing expired leases"))?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Gives back every job leased to `consumer`, unchanged; returns how many.
    pub async fn release(&self, keys: &QueueKeys, consumer: &str) -> Result<usize, StorageError> {
        let mut total = 0;
        loop {
            let n: usize = scripts::RELEASE
                .key(&keys.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("releasing leases"))?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Removes `consumer` from the group (after it released its jobs).
    pub async fn delete_consumer(&self, keys: &QueueKeys, consumer: &str) -> Result<(), StorageError> {
        redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .exec_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("removing the consumer"))
    }

    /// Moves due delayed jobs and retries to the stream; returns how many moved and when the
    /// next one is due (ms since epoch).
    pub async fn promote_due(&self, keys: &QueueKeys) -> Result<(usize, Option<u64>), StorageError> {
        let mut total = 0;
        loop {
            let (n, next): (usize, i64) = scripts::PROMOTE_DUE
                .key(&keys.stream)
                .key(&keys.scheduled)
                .key(&keys.retry)
                .arg(quern_core::envelope::now_ms())
                .arg(BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("promoting due jobs"))?;
            total += n;
            if n < BATCH {
                return Ok((total, u64::try_from(next).ok()));
            }
        }
    }

    /// Waits up to `timeout` for a wake token (pushed when a delayed job or retry is scheduled).
    pub async fn wait_wake(
        &self,
        conn: &mut ConnectionManager,
        keys: &QueueKeys,
        timeout: Duration,
    ) -> Result<bool, StorageError> {
        let secs = timeout.as_secs_f64().max(0.001);
        let v: Value = redis::cmd("BLPOP")
            .arg(&keys.wake)
            .arg(format!("{secs:.3}"))
            .query_async(conn)
            .await
            .map_err(StorageError::redis("waiting for scheduled jobs"))?;
        Ok(!matches!(v, Value::Nil))
    }

    // ----- admin -----

    /// Names of all queues that have seen a job.
    pub async fn queues(&self) -> Result<Vec<String>, StorageError> {
        let mut q: Vec<String> = redis::cmd("SMEMBERS")
            .arg(queues_key(&self.config.prefix))
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("listing queues"))?;
        q.sort();
        Ok(q)
    }

    /// Counts for one queue. Trims the queue's completed entries first (see
    /// [`trim_acked`](Self::trim_acked)), so it needs a primary, not a read-only replica.
    pub async fn stats(&self, keys: &QueueKeys) -> Result<QueueStats, StorageError> {
        let mut conn = self.conn();
        let (len, scheduled, retrying, dead, counters): (
            u64,
            u64,
            u64,
            u64,
            std::collections::HashMap<String, u64>,
        ) = redis::pipe()
            .cmd("XLEN")
            .arg(&keys.stream)
            .cmd("ZCARD")
            .arg(&keys.scheduled)
            .cmd("ZCARD")
            .arg(&keys.retry)
            .cmd("ZCARD")
            .arg(&keys.dead)
            .cmd("HGETALL")
            .arg(&keys.stats)
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("reading stats"))?;
        // Trims what it can first, then counts: acknowledged entries are not jobs.
        let (_, _, _, waiting, running) = self.trim_script(keys, true, false).await?;
        // Uncountable cheaply (Redis without `lag`, and over 10,000 entries held back by a long
        // lease): every entry that is not leased, an upper bound.
        let pending = u64::try_from(waiting).unwrap_or_else(|_| len.saturating_sub(running));
        Ok(QueueStats {
            queue: keys.queue.clone(),
            pending,
            running,
            scheduled,
            retrying,
            dead,
            completed: counters.get("completed").copied().unwrap_or(0),
            failed: counters.get("failed").copied().unwrap_or(0),
        })
    }

    /// Dead jobs, newest first: `(job id, record JSON)`.
    pub async fn dead_list(
        &self,
        keys: &QueueKeys,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.dead)
            .arg(0)
            .arg(limit.saturating_sub(1) as i64)
            .arg("REV")
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("listing dead jobs"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys.dead_records)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("listing dead jobs"))?;
        Ok(ids
            .into_iter()
            .zip(records)
            .filter_map(|(id, r)| r.map(|r| (id, r)))
            .collect())
    }

    /// The dead record of `job_id`, if it is dead.
    pub async fn dead_get(&self, keys: &QueueKeys, job_id: &str) -> Result<Option<String>, StorageError> {
        redis::cmd("HGET")
            .arg(&keys.dead_records)
            .arg(job_id)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("reading a dead job"))
    }

    /// Moves a dead job back to its queue with `envelope`; false when it was no longer dead.
    pub async fn dead_revive(
        &self,
        keys: &QueueKeys,
        job_id: &str,
        envelope: &str,
    ) -> Result<bool, StorageError> {
        let n: i64 = scripts::REVIVE_DEAD
            .key(&keys.stream)
            .key(&keys.dead)
            .key(&keys.dead_records)
            .arg(job_id)
            .arg(envelope)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("retrying a dead job"))?;
        Ok(n == 1)
    }

    /// Deletes one dead job; false when it was not there.
    pub async fn dead_delete(&self, keys: &QueueKeys, job_id: &str) -> Result<bool, StorageError> {
        let (n, _): (i64, i64) = redis::pipe()
            .cmd("ZREM")
            .arg(&keys.dead)
            .arg(job_id)
            .cmd("HDEL")
            .arg(&keys.dead_records)
            .arg(job_id)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("deleting a dead job"))?;
        Ok(n == 1)
    }

    /// Deletes every dead job of the queue; returns how many there were.
    pub async fn dead_purge(&self, keys: &QueueKeys) -> Result<u64, StorageError> {
        let (n, _, _): (u64, (), ()) = redis::pipe()
            .cmd("ZCARD")
            .arg(&keys.dead)
            .cmd("UNLINK")
            .arg(&keys.dead)
            .cmd("UNLINK")
            .arg(&keys.dead_records)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("purging dead jobs"))?;
        Ok(n)
    }

    /// Finds a job by id in every state of the queue: dead, scheduled, retrying, pending or
    /// running. Scans (admin use, not for hot paths); returns the state and the stored text.
    pub async fn find_job(
        &self,
        keys: &QueueKeys,
        job_id: &str,
    ) -> Result<Option<(JobState, String)>, StorageError> {
        let mut conn = self.conn();
        if let Some(record) = self.dead_get(keys, job_id).await? {
            return Ok(Some((JobState::Dead, record)));
        }
        let needle = format!("\"id\":{}", serde_json::to_string(job_id).expect("string"));
        for (set, state) in [
            (&keys.scheduled, JobState::Scheduled),
            (&keys.retry, JobState::Retrying),
        ] {
            let mut cursor = 0u64;
            loop {
                let (next, members): (u64, Vec<String>) = redis::cmd("ZSCAN")
                    .arg(set)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(StorageError::redis("finding a job"))?;
                // ZSCAN answers member, score, member, score...
                if let Some(m) = members.iter().step_by(2).find(|m| m.contains(&needle)) {
                    return Ok(Some((state, m.clone())));
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // Entries at or before the last delivered one that are not leased are completed jobs
        // not yet trimmed: not found here.
        let last_delivered = self.trim_acked(keys).await?.last_delivered;
        let mut start = "-".to_owned();
        loop {
            let page: Value = redis::cmd("XRANGE")
                .arg(&keys.stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(StorageError::redis("finding a job"))?;
            let entries = parse_read(Value::Array(vec![Value::Array(vec![Value::Nil, page])]))?;
            let Some(last) = entries.last() else { break };
            start = format!("({}", last.entry_id);
            let count = entries.len();
            for e in entries {
                let text = String::from_utf8_lossy(&e.envelope);
                if text.contains(&needle) {
                    let pending: Value = redis::cmd("XPENDING")
                        .arg(&keys.stream)
                        .arg(GROUP)
                        .arg(&e.entry_id)
                        .arg(&e.entry_id)
                        .arg(1)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or(Value::Nil);
                    let running = matches!(&pending, Value::Array(v) if !v.is_empty());
                    let delivered = last_delivered
                        .as_deref()
                        .is_some_and(|last| parse_entry_id(&e.entry_id) <= parse_entry_id(last));
                    let state = if running {
                        JobState::Running
                    } else if delivered {
                        continue;
                    } else {
                        JobState::Pending
                    };
                    return Ok(Some((state, text.into_owned())));
                }
            }
            if count < 1000 {
                break;
            }
        }
        Ok(None)
    }

    /// Deletes every key of the queue (tests and `quern` admin use).
    pub async fn delete_queue(&self, keys: &QueueKeys) -> Result<(), StorageError> {
        redis::pipe()
            .cmd("UNLINK")
            .arg(&keys.all()[..])
            .cmd("SREM")
            .arg(queues_key(&self.config.prefix))
            .arg(&keys.queue)
            .exec_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("deleting a queue"))
    }
}

/// How many entries one bounded script call handles.
const BATCH: usize = 500;

fn script_cmd(
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

pub(crate) fn parse_read(reply: Value) -> Result<Vec<Delivery>, StorageError> {
    let bad = |detail: &str| StorageError::Protocol {
        context: "reading jobs",
        detail: detail.to_owned(),
    };
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        Value::Map(m) => m.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        other => return Err(bad(&format!("{other:?}"))),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(bad("stream is not a pair"));
        };
        let Some(Value::Array(entries)) = pair.pop() else {
            return Err(bad("no entries"));
        };
        out.reserve(entries.len());
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err(bad("entry is not an array"));
            };
            let fields = parts.pop();
            let id = match parts.pop() {
                Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| bad("entry id"))?,
                Some(Value::SimpleString(s)) => s,
                _ => return Err(bad("entry id")),
            };
            let mut entry = EntryBuilder::default();
            if let Some(Value::Array(fields)) = fields {
                let mut it = fields.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let Value::BulkString(k) = k else { continue };
                    entry.field_value(&k, v);
                }
            }
            out.push(entry.finish(id));
        }
    }
    Ok(out)
}

/// Builds a [`Delivery`] from an entry's fields, whichever parser read them.
#[derive(Default)]
pub(crate) struct EntryBuilder {
    envelope: Vec<u8>,
    lease_expiries: u32,
    others: serde_json::Map<String, serde_json::Value>,
}

impl EntryBuilder {
    /// A field as bytes (`None`: a null value).
    pub(crate) fn field(&mut self, key: &[u8], value: Option<&[u8]>) {
        match (key, value) {
            (b"e", Some(v)) => self.envelope = v.to_vec(),
            (b"r", Some(v)) => self.lease_expiries = lease_expiries(v),
            (k, v) => self.other(
                k,
                v.map_or_else(|| "Nil".to_owned(), |b| String::from_utf8_lossy(b).into_owned()),
            ),
        }
    }

    /// A field as redis-rs parsed it.
    pub(crate) fn field_value(&mut self, key: &[u8], value: Value) {
        match (key, value) {
            (b"e", Value::BulkString(v)) => self.envelope = v,
            (b"r", Value::BulkString(v)) => self.lease_expiries = lease_expiries(&v),
            (k, Value::BulkString(b)) => self.other(k, String::from_utf8_lossy(&b).into_owned()),
            (k, other) => self.other(k, format!("{other:?}")),
        }
    }

    fn other(&mut self, key: &[u8], value: String) {
        self.others
            .insert(String::from_utf8_lossy(key).into_owned(), value.into());
    }

    /// When the entry has no `e` field, all its fields are kept as JSON for the dead record.
    pub(crate) fn finish(self, entry_id: String) -> Delivery {
        let foreign_fields = self
            .envelope
            .is_empty()
            .then(|| serde_json::Value::Object(self.others).to_string());
        Delivery {
            entry_id,
            envelope: self.envelope,
            lease_expiries: self.lease_expiries,
            foreign_fields,
        }
    }
}

fn lease_expiries(v: &[u8]) -> u32 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
