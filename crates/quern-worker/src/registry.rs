//! The job types a worker knows, by name.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use quern_core::{
    AttemptOutcome, DecodeError, Extensions, Job, JobContext, JobOptions, envelope::decode_payload,
};

use crate::executor::{self, Limits};

/// Prepares one execution of a registered job type from its raw payload.
pub(crate) trait Handler: Send + Sync {
    fn options(&self) -> &JobOptions;
    /// Whether the worker's configuration lets this job's resources be acquired.
    fn check(&self, ext: &Extensions) -> Result<(), String>;
    /// Whether `payload` decodes into this job type.
    fn check_payload(&self, payload: &str) -> Result<(), DecodeError>;
    /// Decodes `payload` now (so the caller need not copy it) and returns the execution, not
    /// yet started.
    fn prepare(
        &self,
        ctx: Arc<JobContext>,
        payload: &str,
        ext: Arc<Extensions>,
        limits: Limits,
    ) -> Result<BoxFuture<'static, AttemptOutcome>, DecodeError>;
}

struct Typed<J: Job> {
    options: JobOptions,
    _job: std::marker::PhantomData<fn() -> J>,
}

impl<J: Job> Handler for Typed<J> {
    fn options(&self) -> &JobOptions {
        &self.options
    }

    fn check(&self, ext: &Extensions) -> Result<(), String> {
        <J::Resources as quern_core::Resource>::check(ext)
    }

    fn check_payload(&self, payload: &str) -> Result<(), DecodeError> {
        decode_payload::<J>(payload).map(drop)
    }

    fn prepare(
        &self,
        ctx: Arc<JobContext>,
        payload: &str,
        ext: Arc<Extensions>,
        limits: Limits,
    ) -> Result<BoxFuture<'static, AttemptOutcome>, DecodeError> {
        let job: J = decode_payload(payload)?;
        let how = executor::How {
            isolation: self.options.isolation,
            timeout: self.options.timeout,
        };
        Ok(Box::pin(executor::execute(job, ctx, ext, how, limits)))
    }
}

/// The job types a worker can run, keyed by [`Job::NAME`].
///
/// ```
/// # use quern_core::{Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct SendEmail { to: String }
/// # impl Job for SendEmail { const NAME: &'static str = "send_email"; type Resources = ();
/// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
/// let registry = quern_worker::Registry::new().register::<SendEmail>();
/// assert!(registry.contains("send_email"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
    periodic: Vec<Arc<crate::periodic::Declared>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds job type `J` with its own [`Job::options`].
    ///
    /// # Panics
    /// If another type was registered under the same name: two types would fight over one
    /// payload format.
    #[must_use]
    pub fn register<J: Job>(self) -> Self {
        self.register_with::<J>(J::options())
    }

    /// Adds job type `J` with options overriding its own.
    #[must_use]
    pub fn register_with<J: Job>(mut self, options: JobOptions) -> Self {
        let previous = self.handlers.insert(
            J::NAME.to_owned(),
            Arc::new(Typed::<J> {
                options,
                _job: std::marker::PhantomData,
            }),
        );
        assert!(previous.is_none(), "job name {:?} is registered twice", J::NAME);
        self
    }

    /// Enqueues `job` (a `J`, registered here or on another worker) on `schedule`, to `J`'s
    /// queue; every worker that declares it may fire it, and each due time runs once. Refuses a
    /// second schedule of the same name. See [`periodic`](crate::periodic).
    ///
    /// ```
    /// # use quern_core::{Job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Report { full: bool }
    /// # impl Job for Report { const NAME: &'static str = "report"; type Resources = ();
    /// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
    /// use quern_worker::periodic::Periodic;
    /// let registry = quern_worker::Registry::new()
    ///     .register::<Report>()
    ///     .periodic(Periodic::cron("report-5min", "0 */5 * * * *")?, Report { full: false })?;
    /// assert_eq!(registry.schedules().count(), 1);
    /// # Ok::<(), quern_worker::periodic::PeriodicError>(())
    /// ```
    pub fn periodic<J: Job>(
        mut self,
        schedule: crate::periodic::Periodic,
        job: J,
    ) -> Result<Self, crate::periodic::PeriodicError> {
        crate::periodic::declare(&mut self.periodic, schedule, &job)?;
        Ok(self)
    }

    /// The periodic schedules declared, in declaration order.
    pub fn schedules(&self) -> impl Iterator<Item = &crate::periodic::Periodic> {
        self.periodic.iter().map(|d| &d.periodic)
    }

    pub(crate) fn declared(&self) -> &[Arc<crate::periodic::Declared>] {
        &self.periodic
    }

    /// Whether a job type of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// The options of the job type `name`.
    pub fn options(&self, name: &str) -> Option<&JobOptions> {
        self.handlers.get(name).map(|h| h.options())
    }

    /// Whether no job type is registered (the generic `quern` binary).
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Whether `payload` (JSON text) decodes into the job type registered as `name`: `None`
    /// when no such type is registered, else the decode result, with the same diagnostic a
    /// worker would record (field path, line, column, the text around it).
    pub fn check_payload(&self, name: &str, payload: &str) -> Option<Result<(), DecodeError>> {
        self.handlers.get(name).map(|h| h.check_payload(payload))
    }

    /// Registered names, sorted, owned.
    pub(crate) fn owned_names(&self) -> Vec<String> {
        self.names().into_iter().map(str::to_owned).collect()
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The queues of the registered job types, sorted and deduplicated.
    pub fn queues(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .handlers
            .values()
            .map(|h| h.options().queue.to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Why the jobs of `queues` could not run with `ext`: one line per job type that cannot.
    pub(crate) fn check(&self, queues: &[String], ext: &Extensions) -> Vec<String> {
        let mut problems: Vec<String> = self
            .handlers
            .iter()
            .filter(|(_, h)| queues.iter().any(|q| *q == *h.options().queue))
            .filter_map(|(name, h)| h.check(ext).err().map(|why| format!("job type {name:?}: {why}")))
            .collect();
        problems.sort();
        problems
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(name)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("jobs", &self.names()).finish()
    }
}
