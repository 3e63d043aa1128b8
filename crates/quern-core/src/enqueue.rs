//! Per-enqueue options: one builder for every enqueue path (single, bulk, delayed, raw JSON, the
//! CLI), and what an enqueue reports back.

use std::time::{Duration, SystemTime};

use crate::envelope::{Headers, InvalidJobId, JobId};

/// The longest unique key, in bytes.
pub const MAX_UNIQUE_KEY_BYTES: usize = 256;

/// A uniqueness rule: while a job holding `key` is in one of `states`, another enqueue with the
/// same key in the same queue enqueues nothing and answers the holder's id
/// ([`Enqueued::duplicate`]).
///
/// The lock never outlives its job: it is checked against the holder itself, so once the
/// holder completes, dies or is cancelled (or leaves the chosen states), the next enqueue takes
/// the key over; a job requeued after its worker died keeps it.
///
/// ```
/// use std::time::Duration;
/// use quern_core::{EnqueueOptions, Unique};
/// let options = EnqueueOptions::new().unique(Unique::new("invoice:42").while_running(false).ttl(Duration::from_secs(600)));
/// assert_eq!(options.unique_rule().unwrap().key(), "invoice:42");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unique {
    key: String,
    queued: bool,
    running: bool,
    retrying: bool,
    ttl: Option<Duration>,
}

impl Unique {
    /// A rule on `key` that holds while the job is queued or delayed, running, or waiting for a
    /// retry: until it finishes.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            queued: true,
            running: true,
            retrying: true,
            ttl: None,
        }
    }

    /// Whether the rule holds while the job is queued or delayed (default yes).
    #[must_use]
    pub fn while_queued(mut self, yes: bool) -> Self {
        self.queued = yes;
        self
    }

    /// Whether the rule holds while the job runs (default yes).
    #[must_use]
    pub fn while_running(mut self, yes: bool) -> Self {
        self.running = yes;
        self
    }

    /// Whether the rule holds while the job waits for its next attempt (default yes).
    #[must_use]
    pub fn while_retrying(mut self, yes: bool) -> Self {
        self.retrying = yes;
        self
    }

    /// Lets the rule go after `ttl` at the latest, whatever the holder's state.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl.max(Duration::from_millis(1)));
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The longest the rule holds, if limited.
    pub fn ttl_limit(&self) -> Option<Duration> {
        self.ttl
    }

    /// The states it holds in, as the storage writes them: `q` queued or delayed, `a` running,
    /// `r` retrying.
    pub fn states_code(&self) -> String {
        [(self.queued, 'q'), (self.running, 'a'), (self.retrying, 'r')]
            .into_iter()
            .filter_map(|(on, c)| on.then_some(c))
            .collect()
    }

    /// Checks the key: 1 to 256 bytes.
    pub fn check(&self) -> Result<(), String> {
        if self.key.is_empty() {
            return Err("the unique key is empty".into());
        }
        if self.key.len() > MAX_UNIQUE_KEY_BYTES {
            return Err(format!(
                "the unique key is {} bytes, over the limit of {MAX_UNIQUE_KEY_BYTES} bytes",
                self.key.len()
            ));
        }
        if self.states_code().is_empty() {
            return Err(format!(
                "the unique rule on {:?} holds in no state: keep at least one of queued, running, retrying",
                self.key
            ));
        }
        Ok(())
    }
}

/// When a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum When {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// This long after the enqueue, by the producer's clock.
    In(Duration),
    /// At this time (a time in the past runs now).
    At(SystemTime),
}

/// How one enqueue differs from its job type's defaults ([`JobOptions`](crate::JobOptions)).
///
/// ```
/// use std::time::Duration;
/// use quern_core::EnqueueOptions;
///
/// let options = EnqueueOptions::new()
///     .queue("emails-bulk")
///     .delay(Duration::from_secs(60))
///     .max_attempts(3)
///     .id("welcome:user-42")
///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(options.queue_override(), Some("emails-bulk"));
/// assert!(options.caller_id().unwrap().is_ok());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EnqueueOptions {
    queue: Option<String>,
    when: When,
    max_attempts: Option<u32>,
    id: Option<String>,
    headers: Headers,
    unique: Option<Unique>,
}

impl EnqueueOptions {
    /// No override: the job type's queue and attempts, run now, a new id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues to `queue` instead of the job type's.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Runs after `delay` (millisecond precision).
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = When::In(delay);
        self
    }

    /// Runs at `at` (millisecond precision; a time in the past runs now).
    #[must_use]
    pub fn at(mut self, at: SystemTime) -> Self {
        self.when = When::At(at);
        self
    }

    /// Runs as `when` says.
    #[must_use]
    pub fn when(mut self, when: When) -> Self {
        self.when = when;
        self
    }

    /// This job gets `n` executions in all (at least 1) instead of its type's budget.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// The job's id, chosen by the caller: enqueueing the same id again while the job is known
    /// (queued, scheduled, running, retrying, dead, or its result still kept) enqueues nothing
    /// and reports the job already there ([`Enqueued::duplicate`]). Checked at enqueue by
    /// [`JobId::caller`]: 1 to 128 bytes of `A-Z a-z 0-9 - _ . :`.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Enqueues nothing while another job of the queue holds `rule`'s key (see [`Unique`]); the
    /// job's own [`Job::unique`](crate::Job::unique) is used when this is not set.
    #[must_use]
    pub fn unique(mut self, rule: Unique) -> Self {
        self.unique = Some(rule);
        self
    }

    /// The uniqueness rule, if any.
    pub fn unique_rule(&self) -> Option<&Unique> {
        self.unique.as_ref()
    }

    /// Adds a header (trace context, say), carried in the envelope beside the payload.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The queue override, if any.
    pub fn queue_override(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// When the job should run.
    pub fn when_to_run(&self) -> When {
        self.when
    }

    /// The attempt budget override, if any.
    pub fn attempts_override(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The caller's id, checked; `None` when Quern picks the id.
    pub fn caller_id(&self) -> Option<Result<JobId, InvalidJobId>> {
        self.id.as_deref().map(JobId::caller)
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enqueued {
    /// The job's id.
    pub id: JobId,
    /// The queue it went to.
    pub queue: String,
    /// `true` when a job with this caller-supplied id was already known, or another job holds
    /// the unique key: nothing was written, and `id` names the job already there.
    pub duplicate: bool,
}

impl Enqueued {
    /// A job written now.
    pub fn new(id: JobId, queue: impl Into<String>) -> Self {
        Self {
            id,
            queue: queue.into(),
            duplicate: false,
        }
    }

    /// A job that was already there.
    pub fn duplicate(id: JobId, queue: impl Into<String>) -> Self {
        Self {
            id,
            queue: queue.into(),
            duplicate: true,
        }
    }
}
