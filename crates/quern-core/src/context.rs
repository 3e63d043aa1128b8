//! What one execution knows about itself.

use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::envelope::JobId;

/// A signal that the worker is shutting down.
///
/// Cloning is cheap; every clone observes the same signal. Jobs that run for long can check
/// [`Shutdown::is_triggered`] between steps, or race their work against [`Shutdown::wait`], and
/// return early: the worker then gives the job back to its queue if it has not finished.
// Behind an `Arc`: every execution gets a clone, and cloning a `CancellationToken` itself takes a
// lock shared by all its clones.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<CancellationToken>);

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal. Idempotent.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when the signal fires.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    /// A child signal: fires with this one, and can also be fired on its own.
    pub fn child(&self) -> Shutdown {
        Shutdown(Arc::new(self.0.child_token()))
    }
}

/// What an execution knows about the job it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobContext {
    /// The job's id: stable across retries.
    pub id: JobId,
    /// The job's registered name ([`Job::NAME`](crate::Job::NAME)).
    pub name: String,
    /// The queue the job was fetched from.
    pub queue: String,
    /// 1 for the first execution, 2 for the first retry, and so on. Executions lost with a killed
    /// worker count too.
    pub attempt: u32,
    /// The most attempts this job gets before it is dead-lettered.
    pub max_attempts: u32,
    /// When the job was first enqueued.
    pub enqueued_at: SystemTime,
    /// Fires when the worker begins a graceful shutdown.
    pub shutdown: Shutdown,
}

impl JobContext {
    /// Builds a context; the worker does this for every execution, tests may do it by hand.
    pub fn new(id: JobId, name: impl Into<String>, queue: impl Into<String>, attempt: u32) -> Self {
        Self {
            id,
            name: name.into(),
            queue: queue.into(),
            attempt,
            max_attempts: attempt.max(1),
            enqueued_at: SystemTime::now(),
            shutdown: Shutdown::new(),
        }
    }

    /// Builds a context from every part at once: what the worker uses, so that no signal or
    /// clock reading is made only to be replaced.
    pub fn from_parts(
        id: JobId,
        name: String,
        queue: String,
        attempt: u32,
        max_attempts: u32,
        enqueued_at: SystemTime,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            id,
            name,
            queue,
            attempt,
            max_attempts,
            enqueued_at,
            shutdown,
        }
    }

    /// Sets the attempt budget.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets when the job was enqueued.
    #[must_use]
    pub fn with_enqueued_at(mut self, at: SystemTime) -> Self {
        self.enqueued_at = at;
        self
    }

    /// Uses the given shutdown signal.
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Whether the worker is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_triggered()
    }

    /// Whether this is the last attempt the job gets.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}
