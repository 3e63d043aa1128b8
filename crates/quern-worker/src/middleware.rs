//! Middleware: layers that wrap every execution, in tower's `Layer`/`Service` convention (as
//! axum, tonic and apalis use it).
//!
//! A layer sees an [`Execution`] (the job's context, and the execution itself, not yet started)
//! and returns its [`AttemptOutcome`]: it can act before and after, change the outcome, or
//! short-circuit by returning an outcome without running the job (its resources are then never
//! acquired). The worker decides the job's fate from whatever outcome comes out of the stack.
//!
//! ```
//! use std::convert::Infallible;
//! use std::task::{Context, Poll};
//! use futures_util::future::BoxFuture;
//! use quern_core::AttemptOutcome;
//! use quern_worker::middleware::{Execution, Layer, Service};
//!
//! /// Counts executions.
//! #[derive(Clone)]
//! struct Count<S>(S, std::sync::Arc<std::sync::atomic::AtomicU64>);
//!
//! impl<S> Service<Execution> for Count<S>
//! where S: Service<Execution, Response = AttemptOutcome, Error = Infallible>, S::Future: Send + 'static {
//!     type Response = AttemptOutcome;
//!     type Error = Infallible;
//!     type Future = BoxFuture<'static, Result<AttemptOutcome, Infallible>>;
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> { self.0.poll_ready(cx) }
//!     fn call(&mut self, exec: Execution) -> Self::Future {
//!         self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         Box::pin(self.0.call(exec))
//!     }
//! }
//! ```
//!
//! With no layer added, executions are awaited directly: middleware costs nothing until used.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use quern_core::{AttemptOutcome, JobContext};
pub use tower_layer::Layer;
pub use tower_service::Service;

/// One execution, as middleware sees it: the job's context and the execution, not yet started.
pub struct Execution {
    ctx: Arc<JobContext>,
    run: BoxFuture<'static, AttemptOutcome>,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("id", &self.ctx.id)
            .field("job", &self.ctx.name)
            .field("queue", &self.ctx.queue)
            .field("attempt", &self.ctx.attempt)
            .finish_non_exhaustive()
    }
}

impl Execution {
    pub(crate) fn new(ctx: Arc<JobContext>, run: BoxFuture<'static, AttemptOutcome>) -> Self {
        Self { ctx, run }
    }

    /// The job's id, name, queue, attempt and shutdown signal.
    pub fn ctx(&self) -> &JobContext {
        &self.ctx
    }

    /// Runs the execution (acquire resources, run, release) and returns how it ended.
    pub fn run(self) -> impl Future<Output = AttemptOutcome> + Send + 'static {
        self.run
    }
}

/// The innermost service: runs the execution it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Executor;

impl Service<Execution> for Executor {
    type Response = AttemptOutcome;
    type Error = Infallible;
    type Future = Ran;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exec: Execution) -> Ran {
        Ran(exec.run)
    }
}

/// The future of [`Executor`].
pub struct Ran(BoxFuture<'static, AttemptOutcome>);

impl Future for Ran {
    type Output = Result<AttemptOutcome, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}

/// The service stack a worker runs every execution through, type-erased.
pub type BoxedService = tower::util::BoxCloneSyncService<Execution, AttemptOutcome, Infallible>;

/// The layers added to a worker, composed; `None` until the first one.
#[derive(Clone, Default)]
pub(crate) struct Stack(Option<BoxedService>);

impl Stack {
    /// Wraps the stack in `layer` (the last one added is the outermost).
    pub(crate) fn push<L>(self, layer: L) -> Self
    where
        L: Layer<BoxedService>,
        L::Service:
            Service<Execution, Response = AttemptOutcome, Error = Infallible> + Clone + Send + Sync + 'static,
        <L::Service as Service<Execution>>::Future: Send + 'static,
    {
        let inner = self.0.unwrap_or_else(|| BoxedService::new(Executor));
        Self(Some(BoxedService::new(layer.layer(inner))))
    }

    /// Runs `exec` through the layers, or directly when there are none.
    pub(crate) async fn run(&self, exec: Execution) -> AttemptOutcome {
        match &self.0 {
            None => exec.run.await,
            Some(service) => {
                use tower::ServiceExt;
                match service.clone().oneshot(exec).await {
                    Ok(outcome) => outcome,
                    Err(never) => match never {},
                }
            }
        }
    }

    pub(crate) fn len_hint(&self) -> bool {
        self.0.is_some()
    }
}
