//! [`perform`]: one job through the real executor, without a queue.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use quern_core::envelope::{Failure, NewEnvelope, check_size, decode_envelope, encode_new};
use quern_core::lifecycle::{Attempt, AttemptOutcome, Fate, Policy, Stage, decide};
use quern_core::{
    Broker, Clock, ErrorChain, Extensions, Headers, Job, JobContext, JobError, JobId, MAX_PAYLOAD_BYTES,
    Shutdown,
};
use serde_json::value::RawValue;

use crate::executor::Limits;
use crate::middleware::{BoxedService, Execution, Layer, Service, Stack};
use crate::registry::Registry;
use crate::watchdog::Watchdog;
use crate::worker::{Worker, WorkerConfig};

/// Runs `job` once, as a worker with no extensions and no middleware would, and returns how it
/// ended. See [`Performer`] to run it with a worker's configuration.
///
/// ```
/// # use quern_core::{Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Greet { name: String }
/// # impl Job for Greet { const NAME: &'static str = "greet"; type Resources = ();
/// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
/// #     if self.name.is_empty() { return Err(JobError::permanent("no name")) } Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let performed = quern_worker::testing::perform(&Greet { name: "Ada".into() }).await;
/// performed.assert_succeeded();
///
/// let performed = quern_worker::testing::perform(&Greet { name: String::new() }).await;
/// assert_eq!(performed.chain(), ["no name"]);
/// assert!(!performed.is_retryable() && performed.is_dead());
/// # }
/// ```
pub async fn perform<J: Job>(job: &J) -> Performed {
    Performer::new().perform(job).await
}

/// Runs single jobs the way a worker runs them: the payload goes through its JSON round trip
/// (serialized as a producer writes it, decoded as the worker reads it, with the same
/// diagnostics), the job's resources are acquired and released, the middleware wraps it, its
/// timeout and isolation apply, panics are caught — the worker's own executor does all of it.
/// Only Redis is left out: nothing is claimed or settled. The fate a worker would give the job
/// is decided by the same function the worker uses ([`quern_core::lifecycle::decide`]).
///
/// ```
/// # use quern_core::{Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Greet { name: String }
/// # impl Job for Greet { const NAME: &'static str = "greet"; type Resources = ();
/// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use quern_worker::testing::Performer;
///
/// // The worker of production, built by the application's own function.
/// let worker = quern_worker::Worker::new(
///     quern_core::broker::memory::MemoryBroker::new(),
///     quern_worker::Registry::new().register::<Greet>(),
/// );
/// let performed = Performer::of(&worker).attempt(3).perform(&Greet { name: "Ada".into() }).await;
/// assert_eq!(performed.attempt, 3);
/// performed.assert_succeeded();
/// # }
/// ```
#[derive(Clone)]
pub struct Performer {
    registry: Registry,
    extensions: Arc<Extensions>,
    stack: Stack,
    clock: Clock,
    attempt: u32,
    max_payload: usize,
    /// How long a cancelled job may take to stop, from the worker's settings.
    cancel_grace: Duration,
}

impl std::fmt::Debug for Performer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Performer")
            .field("registry", &self.registry)
            .field("attempt", &self.attempt)
            .field("layers", &self.stack.len_hint())
            .finish_non_exhaustive()
    }
}

impl Default for Performer {
    fn default() -> Self {
        Self::new()
    }
}

impl Performer {
    /// A performer with no extensions, no middleware, the system clock, attempt 1, and each
    /// job's own [`Job::options`].
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            extensions: Arc::new(Extensions::new()),
            stack: Stack::default(),
            clock: Clock::system(),
            attempt: 1,
            max_payload: MAX_PAYLOAD_BYTES,
            cancel_grace: WorkerConfig::default().cancel_grace,
        }
    }

    /// A performer with everything an execution of `worker` runs with: its registered options
    /// (queue, attempts, backoff, timeout, isolation), extensions (a `PgConfig` pointing at a
    /// test database, say), middleware, clock and payload limit.
    pub fn of<B: Broker>(worker: &Worker<B>) -> Self {
        let (registry, extensions, stack, clock, config) = worker.execution_parts();
        Self {
            registry: registry.clone(),
            extensions: Arc::new(extensions.clone()),
            stack: stack.clone(),
            clock: clock.clone(),
            attempt: 1,
            max_payload: worker.broker().max_payload_bytes(),
            cancel_grace: config.cancel_grace,
        }
    }

    /// Runs as attempt `n` (1 for the first execution), as a retry would.
    #[must_use]
    pub fn attempt(mut self, n: u32) -> Self {
        self.attempt = n.max(1);
        self
    }

    /// Adds configuration that resources read at acquire time, as
    /// [`Worker::extension`](crate::Worker::extension) does.
    #[must_use]
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.extensions).insert(value);
        self
    }

    /// Wraps the execution in `layer`, as [`Worker::layer`](crate::Worker::layer) does (the
    /// layer added last is the outermost).
    #[must_use]
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxedService>,
        L::Service:
            Service<Execution, Response = AttemptOutcome, Error = Infallible> + Clone + Send + Sync + 'static,
        <L::Service as Service<Execution>>::Future: Send + 'static,
    {
        self.stack = self.stack.push(layer);
        self
    }

    /// Reads "now" from `clock`: the job's enqueue time and the due time of a retry.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs `job` once and returns how it ended.
    ///
    /// # Panics
    /// When a worker with this configuration would refuse to start because the job's resources
    /// cannot be had (an `IsolatedPg` job and no database configured): the message says what
    /// to set.
    pub async fn perform<J: Job>(&self, job: &J) -> Performed {
        crate::panic::install_panic_hook();
        let own;
        let registry = if self.registry.contains(J::NAME) {
            &self.registry
        } else {
            own = Registry::new().register::<J>();
            &own
        };
        let handler = registry.get(J::NAME).expect("registered above");
        if let Err(why) = handler.check(&self.extensions) {
            panic!(
                "quern::testing: a worker would refuse to start: job type {:?}: {why}",
                J::NAME
            );
        }
        let options = handler.options();
        let policy = Policy {
            max_attempts: options.max_attempts,
            backoff: options.backoff,
        };
        let id = JobId::new();
        let attempt = self.attempt;
        let finish = |outcome: AttemptOutcome, result: Option<Box<RawValue>>| {
            // No jitter: the retry time is the earliest one the worker could pick.
            let decision = decide(
                &outcome,
                Attempt {
                    number: attempt,
                    now_ms: self.clock.now_ms(),
                    jitter: 0.0,
                },
                &policy,
            );
            Performed {
                outcome,
                fate: decision.fate,
                failure: decision.failure,
                id: id.clone(),
                attempt,
                result,
            }
        };
        // As a producer writes it, then as the worker reads it.
        let headers = Headers::default();
        let new = NewEnvelope::new(&id, J::NAME, &headers);
        let envelope = match encode_new(&new, job, self.max_payload) {
            Ok(text) => text,
            Err(err) => return finish(AttemptOutcome::Undecodable(err), None),
        };
        let env = match decode_envelope(envelope.as_bytes()) {
            Ok(env) => env,
            Err(err) => return finish(AttemptOutcome::Undecodable(err), None),
        };
        let payload = env.payload.get();
        if let Err(err) = check_size(payload.as_bytes(), self.max_payload) {
            return finish(AttemptOutcome::Undecodable(err), None);
        }
        let ctx = Arc::new(
            JobContext::from_parts(
                id.clone(),
                env.job.clone(),
                options.queue.to_string(),
                attempt,
                policy.max_attempts,
                self.clock.now(),
                Shutdown::new(),
            )
            .with_extensions(self.extensions.clone())
            .with_result_limit(self.max_payload),
        );
        let limits = Limits {
            hard_stop: Shutdown::new(),
            watchdog: Arc::new(Watchdog::new(None)),
            cancel_grace: self.cancel_grace,
        };
        let run = match handler.prepare(ctx.clone(), payload, self.extensions.clone(), limits) {
            Ok(run) => run,
            Err(err) => return finish(AttemptOutcome::Undecodable(err), None),
        };
        let outcome = self.stack.run(Execution::new(ctx.clone(), run)).await;
        finish(outcome, ctx.result().map(RawValue::to_owned))
    }
}

/// How one [`perform`]ed execution ended, and what a worker would do with the job next.
///
/// More may be added, hence `#[non_exhaustive]`: read the fields, or use the methods.
#[derive(Debug)]
#[non_exhaustive]
pub struct Performed {
    /// How the attempt ended, exactly as the worker's executor and middleware reported it.
    pub outcome: AttemptOutcome,
    /// What a worker would do next: complete it, retry it at T, snooze it, dead-letter it.
    pub fate: Fate,
    /// The failure a worker would record with the job (its kind and error chain), if it failed.
    pub failure: Option<Failure>,
    /// The id the execution ran under.
    pub id: JobId,
    /// The attempt it ran as.
    pub attempt: u32,
    /// The result the job set ([`JobContext::set_result`]), as JSON.
    pub result: Option<Box<RawValue>>,
}

impl Performed {
    /// The result the job set, decoded into `T`; `None` when it set none.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.result.as_deref().map(|raw| serde_json::from_str(raw.get()))
    }

    /// Whether `run` returned `Ok`.
    pub fn is_succeeded(&self) -> bool {
        matches!(self.outcome, AttemptOutcome::Succeeded)
    }

    /// The error returned by `run` (or by acquiring its resources), if that is how it ended.
    pub fn error(&self) -> Option<&JobError> {
        match &self.outcome {
            AttemptOutcome::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Where the failure happened, when it returned an error.
    pub fn stage(&self) -> Option<Stage> {
        match &self.outcome {
            AttemptOutcome::Failed { stage, .. } => Some(*stage),
            _ => None,
        }
    }

    /// The panic message (with its location), if it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.outcome {
            AttemptOutcome::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether it ran past its timeout.
    pub fn is_timed_out(&self) -> bool {
        matches!(self.outcome, AttemptOutcome::TimedOut { .. })
    }

    /// The failure's messages, outermost first, as a worker records them: an error's context
    /// and each `source()`, or one line for a panic, a timeout or a decode error. Empty when it
    /// did not fail.
    pub fn chain(&self) -> Vec<String> {
        match (&self.outcome, &self.failure) {
            // The error's own chain, without the stage line the stored failure starts with.
            (AttemptOutcome::Failed { error, .. }, _) => error.chain().0,
            (_, Some(failure)) => failure.chain.clone(),
            _ => Vec::new(),
        }
    }

    /// Whether another attempt could succeed: a retryable error, a panic or a timeout.
    pub fn is_retryable(&self) -> bool {
        match &self.outcome {
            AttemptOutcome::Failed { error, .. } => error.is_retryable(),
            AttemptOutcome::Panicked { .. } | AttemptOutcome::TimedOut { .. } => true,
            _ => false,
        }
    }

    /// Whether a worker would run it again later (retry or snooze).
    pub fn will_run_again(&self) -> bool {
        matches!(self.fate, Fate::Retry { .. } | Fate::Snooze { .. })
    }

    /// Whether a worker would move it to the dead set.
    pub fn is_dead(&self) -> bool {
        matches!(self.fate, Fate::Dead { .. })
    }

    /// Panics unless it succeeded, with how it ended and its whole error chain.
    #[track_caller]
    pub fn assert_succeeded(&self) {
        if !self.is_succeeded() {
            panic!("{}", self.describe("the job did not succeed"));
        }
    }

    /// Panics unless it failed (an error, a panic, a timeout, a decode error), with how it
    /// ended.
    #[track_caller]
    pub fn assert_failed(&self) {
        if self.failure.is_none() {
            panic!("{}", self.describe("the job did not fail"));
        }
    }

    fn describe(&self, what: &str) -> String {
        let mut s = format!("{what}: it {} (attempt {})", self.outcome.name(), self.attempt);
        let chain = self.chain();
        if !chain.is_empty() {
            s.push_str(&format!(": {}", ErrorChain(chain)));
        }
        s.push_str(&format!("; a worker would: {:?}", self.fate));
        s
    }
}
