//! Job failures that keep their whole cause chain.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error as StdError;
use std::fmt;
use std::sync::RwLock;

use crate::backtrace::BacktraceSetting;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a job execution failed.
///
/// A `JobError` wraps the error that caused the failure without flattening it into a string, so
/// the worker can log and store every `source()` in the chain. It also says whether another
/// attempt could succeed ([`JobError::is_retryable`]): the worker decides by asking, never by
/// matching text.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into a `JobError`, so `?` works
/// inside [`Job::run`](crate::Job::run). The conversion asks the [registered
/// classifiers](register_classifier) about the error and each of its `source()`s: the first that
/// recognises one decides whether the failure is retryable or permanent (quern-diesel registers
/// one that makes a syntax error or a missing table permanent, and a lost connection or a
/// serialization failure retryable). An error no classifier recognises is retryable:
///
/// ```
/// use quern_core::JobError;
/// fn parse(s: &str) -> Result<u32, JobError> {
///     Ok(s.parse::<u32>()?)
/// }
/// let err = parse("x").unwrap_err();
/// assert!(err.is_retryable());
/// assert!(err.to_string().contains("invalid digit"));
/// ```
pub struct JobError {
    retryable: bool,
    context: Option<String>,
    source: BoxError,
    /// Captured where the error was made, when `QUERN_BACKTRACE` asks for it
    /// ([`BacktraceSetting::current`]); `RUST_BACKTRACE` alone does not.
    backtrace: Backtrace,
}

impl JobError {
    /// A failure that another attempt may fix (a timeout, a connection refused).
    pub fn retryable(err: impl Into<BoxError>) -> Self {
        Self {
            retryable: true,
            context: None,
            source: err.into(),
            backtrace: BacktraceSetting::current().capture(),
        }
    }

    /// A failure that no retry can fix (bad input, a refused operation): the job goes straight to
    /// the dead-letter set.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        Self {
            retryable: false,
            context: None,
            source: err.into(),
            backtrace: BacktraceSetting::current().capture(),
        }
    }

    /// A retryable failure described by a message only.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::retryable(message.into())
    }

    /// Adds a line of context above the cause ("writing page 3"), keeping the cause as `source`.
    #[must_use]
    pub fn context(mut self, context: impl Into<String>) -> Self {
        match self.context.take() {
            None => self.context = Some(context.into()),
            Some(inner) => {
                let wrapped = Contextual {
                    message: inner,
                    source: self.source,
                };
                self.source = Box::new(wrapped);
                self.context = Some(context.into());
            }
        }
        self
    }

    /// Not a failure: "not now, run me again after `delay`" (a rate limit answered 429, a lock
    /// held elsewhere). The job is put back, due after `delay`, with the same attempt number: no
    /// attempt is spent and no error is logged or recorded.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use quern_core::JobError;
    /// let e = JobError::snooze(Duration::from_secs(30));
    /// assert_eq!(e.snoozed_for(), Some(Duration::from_secs(30)));
    /// assert_eq!(JobError::msg("boom").snoozed_for(), None);
    /// ```
    pub fn snooze(delay: std::time::Duration) -> Self {
        Self::retryable(Snooze(delay))
    }

    /// How long the job asked to wait, when this is a [`snooze`](Self::snooze).
    pub fn snoozed_for(&self) -> Option<std::time::Duration> {
        if self.context.is_some() {
            return None;
        }
        self.source.downcast_ref::<Snooze>().map(|s| s.0)
    }

    /// Marks this failure as permanent: no further attempts.
    #[must_use]
    pub fn into_permanent(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Where the error was made, when Quern's backtraces are enabled (`QUERN_BACKTRACE=1`, see
    /// [`backtrace`](crate::backtrace)).
    pub fn backtrace(&self) -> Option<&Backtrace> {
        (self.backtrace.status() == BacktraceStatus::Captured).then_some(&self.backtrace)
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// Every message in the chain, outermost first: the context (if any), the error, then each
    /// `source()`.
    pub fn chain(&self) -> ErrorChain {
        let mut messages = Vec::new();
        if let Some(c) = &self.context {
            messages.push(c.clone());
        }
        messages.extend(ErrorChain::of(&*self.source).0);
        ErrorChain(messages)
    }
}

impl<E> From<E> for JobError
where
    E: StdError + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        let permanent = classify(&err) == Some(Retryability::Permanent);
        let mut job_error = Self::retryable(err);
        job_error.retryable = !permanent;
        job_error
    }
}

/// Whether another attempt may succeed, as an [`ErrorClassifier`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryability {
    /// Another attempt may succeed (a lost connection, a deadlock).
    Retryable,
    /// No attempt can succeed (a syntax error, a missing table): the job is dead-lettered at once.
    Permanent,
}

impl Retryability {
    /// `Retryable` when `retryable`, else `Permanent`.
    pub fn from_retryable(retryable: bool) -> Self {
        if retryable {
            Retryability::Retryable
        } else {
            Retryability::Permanent
        }
    }
}

/// Recognises the errors of one library (by downcasting) and says whether they are worth
/// retrying; `None` for an error it does not know.
///
/// Libraries register one with [`register_classifier`], so that `?` on their errors inside
/// [`Job::run`](crate::Job::run) gives a [`JobError`] that is retryable or permanent as the
/// error deserves, while quern-core depends on none of them.
pub type ErrorClassifier = fn(&(dyn StdError + 'static)) -> Option<Retryability>;

/// The registered classifiers, by name.
static CLASSIFIERS: RwLock<Vec<(&'static str, ErrorClassifier)>> = RwLock::new(Vec::new());

/// Registers `classifier` under `name` (a crate's name: `"quern-diesel"`), replacing the one
/// registered under that name before, if any. The conversion of an error into a [`JobError`]
/// consults every registered classifier from then on, in the order they were registered.
///
/// ```
/// use quern_core::JobError;
/// use quern_core::error::{Retryability, register_classifier};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("no such invoice")]
/// struct NoSuchInvoice;
///
/// register_classifier("invoices", |e| {
///     e.downcast_ref::<NoSuchInvoice>().map(|_| Retryability::Permanent)
/// });
/// fn load() -> Result<(), JobError> {
///     Err(NoSuchInvoice)?
/// }
/// assert!(!load().unwrap_err().is_retryable());
/// ```
pub fn register_classifier(name: &'static str, classifier: ErrorClassifier) {
    let mut classifiers = CLASSIFIERS.write().unwrap_or_else(|e| e.into_inner());
    match classifiers.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = classifier,
        None => classifiers.push((name, classifier)),
    }
}

/// What the registered classifiers say about `err`: walks `err` and its `source()`s, outermost
/// first, and returns the answer of the first classifier that recognises one of them; `None`
/// when none does.
pub fn classify(err: &(dyn StdError + 'static)) -> Option<Retryability> {
    let classifiers = CLASSIFIERS.read().unwrap_or_else(|e| e.into_inner());
    if classifiers.is_empty() {
        return None;
    }
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(answer) = classifiers.iter().find_map(|(_, classify)| classify(e)) {
            return Some(answer);
        }
        cur = e.source();
    }
    None
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(c) => write!(f, "{c}: {}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("retryable", &self.retryable)
            .field("chain", &self.chain().0)
            .finish()
    }
}

/// What [`JobError::snooze`] carries.
#[derive(Debug)]
struct Snooze(std::time::Duration);

impl fmt::Display for Snooze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snoozed for {} ms", self.0.as_millis())
    }
}

impl StdError for Snooze {}

#[derive(Debug)]
struct Contextual {
    message: String,
    source: BoxError,
}

impl fmt::Display for Contextual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Contextual {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// The messages of an error and each of its `source()`s, outermost first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorChain(pub Vec<String>);

impl ErrorChain {
    /// Walks `err` and its sources.
    ///
    /// A cause whose message the previous one already ends with (some errors print their
    /// source in their own message) is not repeated.
    pub fn of(err: &(dyn StdError + 'static)) -> Self {
        let mut out = vec![err.to_string()];
        let mut cur = err.source();
        while let Some(e) = cur {
            let msg = e.to_string();
            if !out.last().is_some_and(|prev| prev.ends_with(&msg)) {
                out.push(msg);
            }
            cur = e.source();
        }
        ErrorChain(out)
    }
}

impl fmt::Display for ErrorChain {
    /// `outer: caused by: inner: caused by: root`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(": caused by: ")?;
            }
            f.write_str(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("query failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_keeps_every_cause_and_context() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = JobError::from(Outer(io))
            .context("loading site 7")
            .context("rendering");
        assert!(err.is_retryable());
        assert_eq!(
            err.chain().0,
            vec![
                "rendering",
                "loading site 7",
                "query failed",
                "connection refused"
            ]
        );
        assert_eq!(
            err.chain().to_string(),
            "rendering: caused by: loading site 7: caused by: query failed: caused by: connection refused"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the test's own permanent error")]
    struct Unfixable;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] Unfixable);

    #[test]
    fn a_registered_classifier_decides_for_an_error_anywhere_in_the_chain() {
        register_classifier("quern-core-test", |e| {
            e.downcast_ref::<Unfixable>().map(|_| Retryability::Permanent)
        });
        assert!(!JobError::from(Unfixable).is_retryable());
        assert!(
            !JobError::from(Wrapper(Unfixable)).is_retryable(),
            "found as a source"
        );
        assert_eq!(classify(&Wrapper(Unfixable)), Some(Retryability::Permanent));
        // What no classifier knows stays retryable, and so does an explicit `retryable`.
        assert!(JobError::from(std::io::Error::other("x")).is_retryable());
        assert!(JobError::retryable(Unfixable).is_retryable());
    }

    #[test]
    fn permanent_is_not_retryable() {
        let err = JobError::permanent("bad input");
        assert!(!err.is_retryable());
        assert!(!JobError::msg("x").into_permanent().is_retryable());
    }
}
