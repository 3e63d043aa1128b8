//! The broker interface the worker talks to, and the types that cross it.
//!
//! The worker's components (fetcher, settler, lease keeper, reaper, promoter) depend on
//! [`Broker`], not on Redis. `quern-redis`'s `Storage` implements it for Redis; every
//! implementation must pass the same contract suite (`quern_core::broker::contract`, behind the
//! `contract` feature).
//!
//! Methods return `impl Future + Send` (no boxing): the worker is generic over its broker, so
//! the Redis path compiles to direct calls.

use std::future::Future;
use std::time::Duration;

use crate::lifecycle::SettleKind;

/// An error from a broker, classified by asking, never by matching text.
pub trait BrokerError: std::error::Error + Send + Sync + 'static {
    /// Whether the same call may succeed later (the server is unreachable, restarting, busy).
    fn is_retryable(&self) -> bool;

    /// Whether the queue's delivery state is missing (a Redis consumer group lost in a restart
    /// without persistence) and [`Broker::prepare`] would fix it.
    fn needs_prepare(&self) -> bool {
        false
    }
}

/// One job handed to a worker, leased until settled or until its lease expires.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Delivery {
    /// The broker's id for this copy of the job (a Redis stream entry id): what settles, lease
    /// renewals and lease expiry name.
    pub entry_id: String,
    /// The envelope bytes, exactly as stored.
    pub envelope: Vec<u8>,
    /// How many times this job's lease expired before (its workers died).
    pub lease_expiries: u32,
    /// When the stored entry was not in Quern's format at all (no `e` field): everything it
    /// held, as a JSON object, so the dead record keeps it.
    pub foreign_fields: Option<String>,
    /// The job's id when the entry carries it beside the envelope: the job was stored here by
    /// a move (a lease expiry, a release) and keeps the id of where it was first stored.
    pub job_id: Option<String>,
}

impl Delivery {
    /// A delivery of `envelope` under `entry_id`.
    pub fn new(entry_id: impl Into<String>, envelope: Vec<u8>) -> Self {
        Self {
            entry_id: entry_id.into(),
            envelope,
            lease_expiries: 0,
            foreign_fields: None,
            job_id: None,
        }
    }

    /// Sets the job id the entry carries beside its envelope.
    #[must_use]
    pub fn with_job_id(mut self, id: Option<String>) -> Self {
        self.job_id = id;
        self
    }

    /// Sets how many times the job's lease expired before.
    #[must_use]
    pub fn with_lease_expiries(mut self, n: u32) -> Self {
        self.lease_expiries = n;
        self
    }

    /// Keeps the fields of an entry that was not in Quern's format.
    #[must_use]
    pub fn with_foreign_fields(mut self, json: Option<String>) -> Self {
        self.foreign_fields = json;
        self
    }
}

/// How a finished execution is written back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settle {
    /// Done: acknowledge it.
    Complete {
        /// The delivery's entry id.
        entry_id: String,
        /// The job id, when the job is not found by its entry alone (it has an id of its own,
        /// or moved): what its lookup entry is kept under, removed now.
        job_id: Option<String>,
    },
    /// Failed: run the next attempt at `due_ms`.
    Retry {
        /// The delivery's entry id.
        entry_id: String,
        /// The job id.
        job_id: String,
        /// Due time, ms since the epoch.
        due_ms: u64,
        /// The envelope of the next attempt.
        envelope: String,
    },
    /// Asked to run later: the same attempt again at `due_ms`, without counting a failure.
    Snooze {
        /// The delivery's entry id.
        entry_id: String,
        /// The job id.
        job_id: String,
        /// Due time, ms since the epoch.
        due_ms: u64,
        /// The envelope to run then.
        envelope: String,
    },
    /// Cannot or may not run again: keep it in the dead set.
    Dead {
        /// The delivery's entry id.
        entry_id: String,
        /// The job id.
        job_id: String,
        /// The dead record, as JSON.
        record: String,
    },
    /// Done, and its status kept for a while: a completed job whose type keeps results, or a
    /// cancelled one. Acknowledged like [`Settle::Complete`], and its record stored under its
    /// id for `keep_ms`.
    Finish {
        /// The delivery's entry id.
        entry_id: String,
        /// The job id.
        job_id: String,
        /// Whether it was cancelled (counted as `cancelled`, not `completed`).
        cancelled: bool,
        /// The [`FinishedRecord`](crate::state::FinishedRecord), as JSON.
        record: String,
        /// How long the record is kept, in ms.
        keep_ms: u64,
    },
}

/// What a worker polls for each queue it works ([`Broker::control`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Control {
    /// The queue is paused: claim nothing from it until it is resumed.
    pub paused: bool,
    /// Ids of jobs this worker runs that were cancelled: stop them.
    pub cancelled: Vec<String>,
}

impl Control {
    /// A control reply.
    pub fn new(paused: bool, cancelled: Vec<String>) -> Self {
        Self { paused, cancelled }
    }
}

impl Settle {
    /// Completes a job found by its entry alone.
    pub fn complete(entry_id: impl Into<String>) -> Self {
        Settle::Complete {
            entry_id: entry_id.into(),
            job_id: None,
        }
    }

    /// The delivery this settles.
    pub fn entry_id(&self) -> &str {
        match self {
            Settle::Complete { entry_id, .. }
            | Settle::Retry { entry_id, .. }
            | Settle::Snooze { entry_id, .. }
            | Settle::Dead { entry_id, .. }
            | Settle::Finish { entry_id, .. } => entry_id,
        }
    }

    /// What kind of write this is.
    pub fn kind(&self) -> SettleKind {
        match self {
            Settle::Complete { .. } | Settle::Finish { .. } => SettleKind::Complete,
            Settle::Retry { .. } => SettleKind::Retry,
            Settle::Snooze { .. } => SettleKind::Snooze,
            Settle::Dead { .. } => SettleKind::Dead,
        }
    }
}

/// Dead-letter retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl DeadRetention {
    /// Keep at most `max_count` dead jobs, none older than `max_age`.
    pub fn new(max_count: u64, max_age: Duration) -> Self {
        Self { max_count, max_age }
    }
}

/// How a batch of settles is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettleOptions {
    /// Dead-letter retention.
    pub retention: DeadRetention,
    /// Delete completed entries at once instead of leaving them to [`Broker::trim`] (the worker
    /// sets this while a long lease holds trimming back).
    pub delete_completed: bool,
}

impl SettleOptions {
    /// Options with `retention`.
    pub fn new(retention: DeadRetention, delete_completed: bool) -> Self {
        Self {
            retention,
            delete_completed,
        }
    }
}

/// What one [`Broker::trim`] did and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrimReport {
    /// Completed entries removed.
    pub trimmed: u64,
    /// The oldest entry leased and not yet settled, if any: nothing at or after it is trimmed.
    pub oldest_leased: Option<String>,
    /// The last entry handed to a worker, if any.
    pub last_delivered: Option<String>,
    /// How far, in ms, the oldest leased entry lags behind the last delivered one: completed
    /// entries between them wait for it.
    pub held_back_ms: u64,
}

/// What one [`Broker::promote_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Promoted {
    /// Jobs moved to their queue.
    pub moved: usize,
    /// When the next delayed job or retry is due, ms since the epoch.
    pub next_due_ms: Option<u64>,
}

impl Promoted {
    /// `moved` jobs moved; the next is due at `next_due_ms`.
    pub fn new(moved: usize, next_due_ms: Option<u64>) -> Self {
        Self { moved, next_due_ms }
    }
}

/// What a worker needs from the storage of its queues.
///
/// Every method is safe to call again after a retryable error: a settle that was applied and
/// is written again changes nothing (counters included).
pub trait Broker: Clone + Send + Sync + 'static {
    /// The error of every call.
    type Error: BrokerError;
    /// A queue, resolved once (Redis: its keys).
    type Queue: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// A connection of its own for claiming, so a blocking claim holds up nothing else.
    type Claimer: Send + 'static;
    /// A connection of its own for waiting on wake-ups.
    type Waiter: Send + 'static;

    /// Where this broker stores jobs, for logs (never with a password).
    fn describe(&self) -> String;

    /// The largest payload a worker runs; larger ones are dead-lettered as undecodable.
    fn max_payload_bytes(&self) -> usize {
        crate::envelope::MAX_PAYLOAD_BYTES
    }

    /// A handle of its own on the same storage, with connections opened by the calling task.
    ///
    /// A connection's I/O can be driven by the runtime that opened it (redis-rs's
    /// `ConnectionManager` spawns its driver there): the worker reopens its broker on its own
    /// runtime, so that a job blocking the caller's runtime cannot stall the worker's leases,
    /// claims and settles. A broker without such connections returns a clone (the default).
    fn reopen(&self) -> impl Future<Output = Result<Self, Self::Error>> + Send {
        std::future::ready(Ok(self.clone()))
    }

    /// Resolves a queue by name (refusing names that cannot be used).
    fn queue(&self, name: &str) -> Result<Self::Queue, Self::Error>;

    /// The queue's name.
    fn queue_name(queue: &Self::Queue) -> &str;

    /// Checks, once at worker start, the server settings that could lose jobs (Redis: an
    /// eviction policy other than `noeviction`) and logs a warning with the fix. Never fails: a
    /// check that cannot run is logged too. Brokers with nothing to check keep this default.
    fn check_server(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Makes the queue ready to claim from (creates what is missing; idempotent).
    fn prepare(&self, queue: &Self::Queue) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Opens a claimer. Connects now, so an unreachable server is reported here.
    fn claimer(&self, block: Duration) -> impl Future<Output = Result<Self::Claimer, Self::Error>> + Send;

    /// Claims up to `count` jobs for `consumer`, waiting up to `block` for one to arrive. Each
    /// is leased to `consumer` until settled or its lease expires.
    fn claim(
        &self,
        claimer: &mut Self::Claimer,
        queue: &Self::Queue,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, Self::Error>> + Send;

    /// Writes finished executions. Ops whose lease was lost meanwhile change nothing.
    fn settle(
        &self,
        queue: &Self::Queue,
        ops: &[Settle],
        options: SettleOptions,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Renews the leases of `entry_ids` held by `consumer`; returns those still held (a missing
    /// one lost its lease and was queued again).
    fn renew(
        &self,
        queue: &Self::Queue,
        consumer: &str,
        entry_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;

    /// Puts back the jobs whose lease is older than `lease` (their worker stopped renewing);
    /// returns how many.
    fn requeue_expired(
        &self,
        queue: &Self::Queue,
        lease: Duration,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// Gives back every job leased to `consumer`, unchanged; returns how many.
    fn release(
        &self,
        queue: &Self::Queue,
        consumer: &str,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// Forgets `consumer` (after it released its jobs).
    fn remove_consumer(
        &self,
        queue: &Self::Queue,
        consumer: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Moves delayed jobs and retries due at `now_ms` or before to their queue.
    fn promote_due(
        &self,
        queue: &Self::Queue,
        now_ms: u64,
    ) -> impl Future<Output = Result<Promoted, Self::Error>> + Send;

    /// Opens a waiter for [`wait_for_wake`](Self::wait_for_wake).
    fn waiter(&self, timeout: Duration) -> impl Future<Output = Result<Self::Waiter, Self::Error>> + Send;

    /// Waits up to `timeout` for a wake-up (a job was delayed or scheduled for retry); true
    /// when woken.
    fn wait_for_wake(
        &self,
        waiter: &mut Self::Waiter,
        queue: &Self::Queue,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// What a worker running the jobs `ids` of `queue` polls: whether the queue is paused, and
    /// which of those jobs someone cancelled. A broker without such controls (the default)
    /// answers "not paused, nothing cancelled".
    fn control(
        &self,
        queue: &Self::Queue,
        ids: &[String],
    ) -> impl Future<Output = Result<Control, Self::Error>> + Send {
        let _ = (queue, ids);
        async { Ok(Control::default()) }
    }

    /// Removes completed entries that nothing needs any more.
    fn trim(&self, queue: &Self::Queue) -> impl Future<Output = Result<TrimReport, Self::Error>> + Send;

    /// Appends first-attempt envelopes to the queue, ready to claim, in one round trip.
    fn push(
        &self,
        queue: &Self::Queue,
        envelopes: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Puts envelopes in the queue's delayed set, each due at its time (ms since the epoch).
    fn schedule(
        &self,
        queue: &Self::Queue,
        jobs: &[(u64, String)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

#[cfg(feature = "contract")]
pub mod contract;

pub mod memory;
