//! The `Job` trait and its per-job policy.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::JobContext;
use crate::error::JobError;
use crate::resource::Resource;
use crate::retry::Backoff;

/// A background job: a serde struct with a stable name and an async `run`.
///
/// ```
/// use quern_core::{Job, JobContext, JobError, JobOptions};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendWelcome { user_id: u64 }
///
/// impl Job for SendWelcome {
///     const NAME: &'static str = "send_welcome";
///     type Resources = ();
///
///     fn options() -> JobOptions {
///         JobOptions::new().queue("emails").max_attempts(5)
///     }
///
///     async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
///         println!("welcome, user {} (attempt {})", self.user_id, ctx.attempt);
///         Ok(())
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The name the job is stored and registered under. Keep it stable: renaming a job strands
    /// the copies already queued under the old name (they are dead-lettered as unknown).
    const NAME: &'static str;

    /// What one execution needs, acquired before [`Job::run`] and released after it on every
    /// path: `()` for nothing, a resource such as `quern_diesel::IsolatedPg`, or a tuple.
    type Resources: Resource;

    /// Queue, attempts, backoff, timeout and isolation for this job type.
    fn options() -> JobOptions {
        JobOptions::default()
    }

    /// A uniqueness rule for this job (see [`Unique`](crate::Unique)): while a job of the queue
    /// holds the same key, enqueueing this one writes nothing and answers the holder's id.
    /// `None` (the default) enqueues every copy. Per-enqueue options
    /// ([`EnqueueOptions::unique`](crate::EnqueueOptions::unique)) override it.
    fn unique(&self) -> Option<crate::Unique> {
        None
    }

    /// Runs one execution. Return `Err` to fail it: a retryable error is retried with backoff until
    /// the attempts are spent, a permanent one is dead-lettered at once.
    fn run(
        self,
        ctx: &JobContext,
        resources: &mut Self::Resources,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Where and how an execution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// A task on the worker's runtime: the cheapest, for jobs that never block their thread.
    #[default]
    Task,
    /// Each execution on its own current-thread runtime on a dedicated thread: a job that blocks
    /// its thread cannot delay other jobs or the worker's lease renewals.
    Runtime,
}

/// Per-job-type policy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobOptions {
    /// The queue jobs of this type are enqueued to.
    pub queue: Cow<'static, str>,
    /// Total executions allowed, the first one included. At least 1.
    pub max_attempts: u32,
    /// Wait between a retryable failure and the next attempt.
    pub backoff: Backoff,
    /// The longest one execution may run; it is then cancelled and counts as a retryable failure.
    /// `None` means no limit.
    pub timeout: Option<Duration>,
    /// Where the execution runs.
    pub isolation: Isolation,
    /// How long a completed job's status and result ([`JobContext::set_result`]) are kept,
    /// readable by id. `None` (the default) keeps nothing: completing such a job writes
    /// nothing more than an acknowledgement.
    pub keep_result: Option<Duration>,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            queue: Cow::Borrowed("default"),
            max_attempts: 10,
            backoff: Backoff::default(),
            timeout: Some(Duration::from_secs(30 * 60)),
            isolation: Isolation::Task,
            keep_result: None,
        }
    }
}

impl JobOptions {
    /// The defaults: queue `default`, 10 attempts, exponential backoff from 1 s, 30 min timeout,
    /// [`Isolation::Task`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<Cow<'static, str>>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the total number of executions allowed (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the backoff between attempts.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets (or with `None`, removes) the per-execution timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// Keeps each completed job's status and result for `ttl` (at least 1 ms), readable by id.
    #[must_use]
    pub fn keep_result(mut self, ttl: Duration) -> Self {
        self.keep_result = Some(ttl.max(Duration::from_millis(1)));
        self
    }

    /// Sets the isolation.
    #[must_use]
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
}
