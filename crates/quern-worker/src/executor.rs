//! Runs one execution: acquire resources, run under timeout, catch panics, release resources —
//! on every path — in the job's isolation.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use quern_core::{
    DecodeError, Extensions, Isolation, Job, JobContext, JobError, Outcome, Resource, ResourceContext,
    Shutdown,
};

/// How one execution ended, as the worker sees it.
#[derive(Debug)]
pub(crate) enum ExecOutcome {
    Succeeded,
    /// `run` or a resource returned an error.
    Failed {
        error: JobError,
        during: &'static str,
    },
    /// `run` panicked: the message with its location, and a backtrace when enabled.
    Panicked {
        message: String,
        backtrace: Option<String>,
    },
    TimedOut {
        after: Duration,
    },
    /// Cancelled by shutdown: not settled; the job goes back to its queue.
    Cancelled,
    Undecodable(DecodeError),
}

/// Limits the worker imposes on an execution.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Fires after the shutdown grace period: running executions are cancelled.
    pub hard_stop: Shutdown,
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
    ctx: JobContext,
    ext: Arc<Extensions>,
    options: How,
    limits: Limits,
) -> ExecOutcome {
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
                        let _ = tx.send(ExecOutcome::Failed {
                            error: JobError::retryable(e).context("building the execution's runtime"),
                            during: "isolation",
                        });
                        return;
                    }
                };
                let outcome = rt.block_on(run_once(job, &ctx, &ext, timeout, &limits.hard_stop));
                // Tasks the job spawned (a connection's driver, say) end with its runtime.
                drop(rt);
                let _ = tx.send(outcome);
            });
            if let Err(e) = spawned {
                return ExecOutcome::Failed {
                    error: JobError::retryable(e).context("starting the execution's thread"),
                    during: "isolation",
                };
            }
            // A job that blocks its thread cannot honour its timeout from inside: the worker
            // stops waiting a little after it, and abandons the thread.
            let outer = timeout.map(|t| t + Duration::from_secs(1));
            tokio::select! {
                r = rx => r.unwrap_or(ExecOutcome::Panicked {
                    message: "the execution's thread ended without a result".into(),
                    backtrace: None,
                }),
                _ = sleep_opt(outer) => ExecOutcome::TimedOut { after: timeout.unwrap_or_default() },
                _ = hard_stop.wait() => ExecOutcome::Cancelled,
            }
        }
        _ => run_once(job, &ctx, &ext, options.timeout, &limits.hard_stop).await,
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
    hard_stop: &Shutdown,
) -> ExecOutcome {
    let mut resources = match <J::Resources as Resource>::acquire(ResourceContext::new(ctx, ext)).await {
        Ok(r) => r,
        Err(error) => {
            return ExecOutcome::Failed {
                error,
                during: "acquiring resources",
            };
        }
    };
    let outcome = {
        let run = AssertUnwindSafe(InExecution(Box::pin(job.run(ctx, &mut resources)))).catch_unwind();
        tokio::select! {
            r = async {
                match timeout {
                    Some(t) => tokio::time::timeout(t, run).await.ok(),
                    None => Some(run.await),
                }
            } => match r {
                None => ExecOutcome::TimedOut { after: timeout.unwrap_or_default() },
                Some(Ok(Ok(()))) => ExecOutcome::Succeeded,
                Some(Ok(Err(error))) => ExecOutcome::Failed { error, during: "run" },
                Some(Err(panic)) => {
                    let backtrace = LAST_PANIC_BACKTRACE.with(|c| c.borrow_mut().take());
                    ExecOutcome::Panicked { message: panic_message(panic), backtrace }
                }
            },
            _ = hard_stop.wait() => ExecOutcome::Cancelled,
        }
    };
    let for_resource = match &outcome {
        ExecOutcome::Succeeded => Outcome::Succeeded,
        ExecOutcome::Failed { .. } | ExecOutcome::Undecodable(_) => Outcome::Failed,
        ExecOutcome::Panicked { .. } => Outcome::Panicked,
        ExecOutcome::TimedOut { .. } => Outcome::TimedOut,
        ExecOutcome::Cancelled => Outcome::Cancelled,
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

thread_local! {
    static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    static LAST_PANIC_BACKTRACE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while a job's `run` is being polled on this thread.
    static IN_EXECUTION: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread as running a job while `run` is polled, so the panic hook knows a panic
/// belongs to a job (and is recorded, not printed).
struct InExecution<F>(Pin<Box<F>>);

impl<F: Future> Future for InExecution<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let was = IN_EXECUTION.with(|c| c.replace(true));
        let out = self.0.as_mut().poll(cx);
        IN_EXECUTION.with(|c| c.set(was));
        out
    }
}

/// Installs (once) a panic hook. A panic inside a job is recorded — message, location
/// (`src/jobs.rs:42:9`) and, when `RUST_BACKTRACE` is set, a backtrace — and logged once by the
/// worker with the job's id, instead of being printed to stderr. Other panics go to the previous
/// hook.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_EXECUTION.with(Cell::get) {
                previous(info);
                return;
            }
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            LAST_PANIC_LOCATION.with(|c| *c.borrow_mut() = loc);
            let bt = std::backtrace::Backtrace::capture();
            let bt = (bt.status() == std::backtrace::BacktraceStatus::Captured).then(|| bt.to_string());
            LAST_PANIC_BACKTRACE.with(|c| *c.borrow_mut() = bt);
        }));
    });
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let msg = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    match LAST_PANIC_LOCATION.with(|c| c.borrow_mut().take()) {
        Some(loc) => format!("{msg} (at {loc})"),
        None => msg,
    }
}
