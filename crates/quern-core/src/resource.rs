//! Resources a job declares for one execution.
//!
//! The worker acquires a job's [`Resource`] right before [`Job::run`](crate::Job::run), on the
//! runtime the execution runs on, and releases it right after, whatever happened: success, error,
//! panic, timeout or shutdown. That makes per-execution resources safe where a process-wide one is
//! not: a connection pool opened on one runtime and used from another fails in ways that are hard
//! to see (connections closed under the caller, or queries that hang).

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::context::JobContext;
use crate::error::JobError;

/// How an execution ended; handed to [`Resource::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// `run` returned `Ok`.
    Succeeded,
    /// `run` returned `Err`, or acquiring a resource failed.
    Failed,
    /// `run` panicked.
    Panicked,
    /// `run` exceeded the job's timeout and was cancelled.
    TimedOut,
    /// `run` was cancelled because the worker shut down.
    Cancelled,
}

/// What a resource sees while it is acquired: the execution and the worker's configuration.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ResourceContext<'a> {
    /// The execution the resource is for.
    pub job: &'a JobContext,
    /// Configuration the worker was built with (for example the database URL).
    pub extensions: &'a Extensions,
}

impl<'a> ResourceContext<'a> {
    /// Builds a context.
    pub fn new(job: &'a JobContext, extensions: &'a Extensions) -> Self {
        Self { job, extensions }
    }
}

/// Something one execution needs, with a lifecycle bound to that execution.
///
/// Implementations must make `acquire` cheap when the job may not use the resource (build lazily,
/// connect on first use) and `release` infallible: it logs what it cannot clean up.
pub trait Resource: Sized + Send + 'static {
    /// Builds the resource for one execution.
    fn acquire(cx: ResourceContext<'_>) -> impl Future<Output = Result<Self, JobError>> + Send;

    /// Disposes of it once the execution has ended with `outcome`.
    fn release(self, outcome: Outcome) -> impl Future<Output = ()> + Send;

    /// Whether the worker's configuration lets this resource be acquired at all (a database it
    /// would connect to, say), checked once when a worker that runs jobs needing it starts: an
    /// error there stops the worker with its message, instead of failing every such job until
    /// it is dead. Touches no network. The default accepts any configuration.
    fn check(extensions: &Extensions) -> Result<(), String> {
        let _ = extensions;
        Ok(())
    }
}

impl Resource for () {
    async fn acquire(_: ResourceContext<'_>) -> Result<Self, JobError> {
        Ok(())
    }

    async fn release(self, _: Outcome) {}
}

macro_rules! tuple_resource {
    ($($name:ident),+) => {
        impl<$($name: Resource),+> Resource for ($($name,)+) {
            #[allow(non_snake_case)]
            async fn acquire(cx: ResourceContext<'_>) -> Result<Self, JobError> {
                // Acquired in order; on a failure the ones already acquired are released.
                tuple_resource!(@acquire cx, []; $($name),+)
            }

            #[allow(non_snake_case)]
            async fn release(self, outcome: Outcome) {
                let ($($name,)+) = self;
                $($name.release(outcome).await;)+
            }

            fn check(extensions: &Extensions) -> Result<(), String> {
                $($name::check(extensions)?;)+
                Ok(())
            }
        }
    };
    (@acquire $cx:ident, [$($done:ident),*]; $next:ident $(, $rest:ident)*) => {{
        let $next = match $next::acquire($cx).await {
            Ok(r) => r,
            Err(e) => {
                $($done.release(Outcome::Failed).await;)*
                return Err(e);
            }
        };
        tuple_resource!(@acquire $cx, [$($done,)* $next]; $($rest),*)
    }};
    (@acquire $cx:ident, [$($done:ident),*];) => {
        Ok(($($done,)*))
    };
}

tuple_resource!(A);
tuple_resource!(A, B);
tuple_resource!(A, B, C);
tuple_resource!(A, B, C, D);

/// A type map for worker-wide configuration that resources read at acquire time.
#[derive(Clone, Default)]
pub struct Extensions {
    /// A worker holds a handful of values and every execution looks one up: a short vector
    /// scanned by type id beats hashing it.
    values: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, replacing any value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        match self.values.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = value,
            None => self.values.push((id, value)),
        }
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of type `T`, if one was inserted.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.values.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Ok1;
    struct Fails;

    impl Resource for Ok1 {
        async fn acquire(_: ResourceContext<'_>) -> Result<Self, JobError> {
            LOG.lock().unwrap().push("acquire ok1".into());
            Ok(Ok1)
        }
        async fn release(self, outcome: Outcome) {
            LOG.lock().unwrap().push(format!("release ok1 {outcome:?}"));
        }
    }

    impl Resource for Fails {
        async fn acquire(_: ResourceContext<'_>) -> Result<Self, JobError> {
            Err(JobError::msg("no"))
        }
        async fn release(self, _: Outcome) {
            unreachable!("never acquired")
        }
    }

    #[tokio::test]
    async fn tuple_releases_what_it_acquired_when_a_later_part_fails() {
        let ctx = JobContext::new(crate::JobId::new(), "t", "q", 1);
        let ext = Extensions::new();
        let res = <(Ok1, Fails)>::acquire(ResourceContext::new(&ctx, &ext)).await;
        assert!(res.is_err());
        assert_eq!(*LOG.lock().unwrap(), vec!["acquire ok1", "release ok1 Failed"]);
    }

    #[test]
    fn extensions_are_typed() {
        let mut ext = Extensions::new();
        ext.insert(5u32);
        ext.insert(String::from("x"));
        assert_eq!(ext.get::<u32>(), Some(&5));
        assert_eq!(ext.get::<String>().map(String::as_str), Some("x"));
        assert_eq!(ext.get::<u64>(), None);
        ext.insert(7u32);
        assert_eq!(
            ext.get::<u32>(),
            Some(&7),
            "a second value of a type replaces the first"
        );
        assert_eq!(format!("{ext:?}"), "Extensions { len: 2 }");
    }
}
