//! What one execution knows about itself.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::envelope::{JobId, MAX_PAYLOAD_BYTES};
use crate::error::JobError;
use crate::resource::Extensions;

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
    /// Fires when someone cancels this job (`Inspector::cancel`, `job cancel <id>`).
    cancel: Option<CancellationToken>,
    /// The worker's shared state ([`Worker::extension`](../../quern_worker/struct.Worker.html)).
    extensions: Option<Arc<Extensions>>,
    /// The value this execution produced ([`JobContext::set_result`]).
    result: OnceLock<Box<RawValue>>,
    /// The largest result accepted, in bytes.
    result_limit: usize,
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
            cancel: None,
            extensions: None,
            result: OnceLock::new(),
            result_limit: MAX_PAYLOAD_BYTES,
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
            cancel: None,
            extensions: None,
            result: OnceLock::new(),
            result_limit: MAX_PAYLOAD_BYTES,
        }
    }

    /// Uses `token` as this execution's cancellation signal.
    #[must_use]
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Gives the execution the worker's shared state.
    #[must_use]
    pub fn with_extensions(mut self, extensions: Arc<Extensions>) -> Self {
        self.extensions = Some(extensions);
        self
    }

    /// Sets the largest result [`set_result`](Self::set_result) accepts, in bytes.
    #[must_use]
    pub fn with_result_limit(mut self, bytes: usize) -> Self {
        self.result_limit = bytes;
        self
    }

    /// Whether this job was cancelled while it ran. A job that runs for long checks this (or
    /// races its work against [`cancelled`](Self::cancelled)) and returns early: whatever it
    /// returns then, the job ends as cancelled and is never retried. One that ignores it is
    /// stopped after the worker's cancel grace period.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// Completes when this job is cancelled (never, for an execution nobody can cancel).
    pub async fn cancelled(&self) {
        match &self.cancel {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Shared state of type `T` the worker was given ([`Worker::extension`]): an HTTP client, a
    /// connection pool, the app's config. `None` when the worker has none of that type.
    ///
    /// [`Worker::extension`]: ../../quern_worker/struct.Worker.html#method.extension
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.as_deref()?.get::<T>()
    }

    /// Keeps `value` as this job's result: stored with the job when it completes, for as long
    /// as its type's [`JobOptions::keep_result`](crate::JobOptions::keep_result) says (and
    /// dropped when that is unset), readable by id (`Inspector::find_job`, `job show <id>`).
    ///
    /// A value that cannot be serialized, or is over the size limit (the payload limit, 1 MiB
    /// by default), is an error: return it (`?`) and the attempt fails with it, retried per the
    /// job's policy. Setting a second result is an error too.
    pub fn set_result<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), JobError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| JobError::retryable(e).context("serializing the job's result"))?;
        let size = raw.get().len();
        if size > self.result_limit {
            return Err(JobError::retryable(format!(
                "the job's result is {size} bytes, over the limit of {} bytes",
                self.result_limit
            )));
        }
        self.result
            .set(raw)
            .map_err(|_| JobError::permanent("the job's result was already set; set it once"))
    }

    /// The result set by [`set_result`](Self::set_result), as JSON.
    pub fn result(&self) -> Option<&RawValue> {
        self.result.get().map(|raw| &**raw)
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
