//! Per-enqueue options: one builder for every enqueue path (single, bulk, delayed, raw JSON, the
//! CLI), and what an enqueue reports back.

use std::time::{Duration, SystemTime};

use crate::envelope::{Headers, InvalidJobId, JobId};

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
    /// `true` when a job with this caller-supplied id was already known: nothing was written,
    /// and `id` names the job already there.
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
