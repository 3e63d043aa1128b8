//! Runs one execution: acquire resources, run under timeout, catch panics, release resources —
//! on every path — in the job's isolation.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use quern_core::lifecycle::{AttemptOutcome, Stage};
use quern_core::{
    Extensions, Isolation, Job, JobContext, JobError, Outcome, Resource, ResourceContext, Shutdown,
};

use crate::panic::{IN_EXECUTION, LAST_PANIC_BACKTRACE, panic_message};
use crate::watchdog::{Watchdog, Watched};

/// Limits the worker imposes on an execution.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Fires after the shutdown grace period: running executions are cancelled.
    pub hard_stop: Shutdown,
    /// Notices a job holding its thread (only on the caller's runtime: `Isolation::Task`).
    pub watchdog: Arc<Watchdog>,
    /// How long a cancelled job may take to stop on its own before it is stopped.
    pub cancel_grace: Duration,
}

/// The parts of a job type's options an execution needs (copied, not cloned per execution).
#[derive(Debug, Clone, Copy)]
pub(crate) struct How {
    pub isolation: Isolation,
    pub timeout: Option<Duration>,
}

/// Runs `job` once, in the isolation its options ask for.
pub(crate) async fn execute<J: Job>(
    job: J,
    ctx: Arc<JobContext>,
    ext: Arc<Extensions>,
    options: How,
    limits: Limits,
) -> AttemptOutcome {
    match options.isolation {
        Isolation::Runtime => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let hard_stop = limits.hard_stop.clone();
            let name = format!("quern-job-{}", ctx.id);
            let span = tracing::Span::current();
            let timeout = options.timeout;
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                let _entered = span.enter();
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(AttemptOutcome::Failed {
                            error: JobError::retryable(e).context("building the execution's runtime"),
                            stage: Stage::Isolation,
                        });
                        return;
                    }
                };
                // Its own thread: blocking there holds up nobody, so no watchdog.
                let outcome = rt.block_on(run_once(job, &ctx, &ext, timeout, &limits, None));
                // Tasks the job spawned (a connection's driver, say) end with its runtime.
                drop(rt);
                let _ = tx.send(outcome);
            });
            if let Err(e) = spawned {
                return AttemptOutcome::Failed {
                    error: JobError::retryable(e).context("starting the execution's thread"),
                    stage: Stage::Isolation,
                };
            }
            // A job that blocks its thread cannot honour its timeout from inside: the worker
            // stops waiting a little after it, and abandons the thread.
            let outer = timeout.map(|t| t + Duration::from_secs(1));
            tokio::select! {
                r = rx => r.unwrap_or(AttemptOutcome::Panicked {
                    message: "the execution's thread ended without a result".into(),
                    backtrace: None,
                }),
                _ = sleep_opt(outer) => AttemptOutcome::TimedOut { after: timeout.unwrap_or_default() },
                _ = hard_stop.wait() => AttemptOutcome::Interrupted,
            }
        }
        _ => {
            let watched = limits.watchdog.watch(&ctx);
            run_once(job, &ctx, &ext, options.timeout, &limits, watched.as_ref()).await
        }
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Acquire, run, release. Release runs whatever happened to `run`.
async fn run_once<J: Job>(
    job: J,
    ctx: &JobContext,
    ext: &Extensions,
    timeout: Option<Duration>,
    limits: &Limits,
    watched: Option<&Watched>,
) -> AttemptOutcome {
    if ctx.is_cancelled() {
        return AttemptOutcome::Cancelled;
    }
    let mut resources = match <J::Resources as Resource>::acquire(ResourceContext::new(ctx, ext)).await {
        Ok(r) => r,
        Err(error) => {
            return AttemptOutcome::Failed {
                error,
                stage: Stage::Acquire,
            };
        }
    };
    let hard_stop = &limits.hard_stop;
    let outcome = {
        let run = AssertUnwindSafe(InExecution {
            run: Box::pin(job.run(ctx, &mut resources)),
            watched,
        })
        .catch_unwind();
        let timed = async {
            match timeout {
                Some(t) => tokio::time::timeout(t, run).await.ok(),
                None => Some(run.await),
            }
        };
        tokio::pin!(timed);
        tokio::select! {
            // A job that returns because it saw its cancellation may be polled before the
            // signal's branch: it is cancelled all the same.
            r = &mut timed => match ended(r, timeout) {
                AttemptOutcome::Succeeded => AttemptOutcome::Succeeded,
                _ if ctx.is_cancelled() => AttemptOutcome::Cancelled,
                other => other,
            },
            _ = ctx.cancelled() => {
                // Told through its context; it gets the grace period to stop on its own.
                // Whatever it returns then but success, it ends as cancelled.
                tokio::select! {
                    r = &mut timed => match ended(r, timeout) {
                        AttemptOutcome::Succeeded => AttemptOutcome::Succeeded,
                        _ => AttemptOutcome::Cancelled,
                    },
                    _ = tokio::time::sleep(limits.cancel_grace) => AttemptOutcome::Cancelled,
                    _ = hard_stop.wait() => AttemptOutcome::Cancelled,
                }
            }
            _ = hard_stop.wait() => AttemptOutcome::Interrupted,
        }
    };
    let for_resource = match &outcome {
        AttemptOutcome::Succeeded | AttemptOutcome::Snoozed { .. } => Outcome::Succeeded,
        AttemptOutcome::Panicked { .. } => Outcome::Panicked,
        AttemptOutcome::TimedOut { .. } => Outcome::TimedOut,
        AttemptOutcome::Cancelled | AttemptOutcome::Interrupted => Outcome::Cancelled,
        _ => Outcome::Failed,
    };
    // A panicking release must not take the worker down either.
    if let Err(p) = AssertUnwindSafe(resources.release(for_resource))
        .catch_unwind()
        .await
    {
        tracing::error!(panic = %panic_message(p), "releasing the job's resources panicked");
    }
    outcome
}

/// How a run that ended (`None`: timed out) ends the attempt. A job that asked to be snoozed
/// ([`JobError::snooze`]) is not a failure.
fn ended(
    r: Option<Result<Result<(), JobError>, Box<dyn std::any::Any + Send>>>,
    timeout: Option<Duration>,
) -> AttemptOutcome {
    match r {
        None => AttemptOutcome::TimedOut {
            after: timeout.unwrap_or_default(),
        },
        Some(Ok(Ok(()))) => AttemptOutcome::Succeeded,
        Some(Ok(Err(error))) => match error.snoozed_for() {
            Some(delay) => AttemptOutcome::Snoozed { delay },
            None => AttemptOutcome::Failed {
                error,
                stage: Stage::Run,
            },
        },
        Some(Err(panic)) => {
            let backtrace = LAST_PANIC_BACKTRACE.with(|c| c.borrow_mut().take());
            AttemptOutcome::Panicked {
                message: panic_message(panic),
                backtrace,
            }
        }
    }
}

/// Marks the thread as running a job while `run` is polled, so the panic hook knows a panic
/// belongs to a job (and is recorded, not printed), and the watchdog sees how long each poll
/// holds the thread.
struct InExecution<'w, F> {
    run: Pin<Box<F>>,
    watched: Option<&'w Watched>,
}

impl<F: Future> Future for InExecution<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _polling = Polling::start(self.watched);
        self.run.as_mut().poll(cx)
    }
}

/// One poll of a job's `run`; ends (on unwinding too) when dropped.
struct Polling<'w> {
    was: bool,
    watched: Option<&'w Watched>,
}

impl<'w> Polling<'w> {
    fn start(watched: Option<&'w Watched>) -> Self {
        let was = IN_EXECUTION.with(|c| c.replace(true));
        if let Some(w) = watched {
            w.polling();
        }
        Self { was, watched }
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.watched {
            w.polled();
        }
        IN_EXECUTION.with(|c| c.set(self.was));
    }
}
