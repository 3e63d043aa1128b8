//! Job failures that keep their whole cause chain.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error as StdError;
use std::fmt;

use crate::backtrace::BacktraceSetting;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a job execution failed.
///
/// A `JobError` wraps the error that caused the failure without flattening it into a string, so
/// the worker can log and store every `source()` in the chain. It also says whether another
/// attempt could succeed ([`JobError::is_retryable`]): the worker decides by asking, never by
/// matching text.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into a retryable `JobError`, so `?`
/// works inside [`Job::run`](crate::Job::run):
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
        Self::retryable(err)
    }
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

    #[test]
    fn permanent_is_not_retryable() {
        let err = JobError::permanent("bad input");
        assert!(!err.is_retryable());
        assert!(!JobError::msg("x").into_permanent().is_retryable());
    }
}
