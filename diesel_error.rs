//! [`PgError`]: why an execution could not get or use its PostgreSQL connection.

use std::error::Error as StdError;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use quern_core::JobError;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why [`IsolatedPg`](crate::IsolatedPg) could not hand out a connection, or a query failed.
///
/// Messages name the server (host, port, database) and show URLs as
/// [`redact_url`](quern_core::redact_url) prints them: the password replaced by `***`, and a
/// string it cannot read with certainty hidden whole. The underlying error is kept as
/// [`source()`](StdError::source), never flattened.
///
/// `?` inside [`Job::run`](quern_core::Job::run) turns any `PgError` into a *retryable*
/// [`JobError`] (quern-core's blanket conversion). To let a permanent failure (a malformed URL)
/// dead-letter the job at once, use [`PgError::into_job_error`]:
///
/// ```no_run
/// # use quern_core::JobError;
/// # async fn run(res: &quern_diesel::IsolatedPg) -> Result<(), JobError> {
/// let mut conn = res.get().await.map_err(quern_diesel::PgError::into_job_error)?;
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// Neither [`PgConfig::database_url`](crate::PgConfig::database_url), nor
    /// [`IsolatedPg::use_database`](crate::IsolatedPg::use_database), nor `DATABASE_URL` gave a URL.
    #[error("no PostgreSQL URL: set PgConfig::database_url or the DATABASE_URL environment variable")]
    MissingUrl,

    /// The URL could not be parsed.
    #[error("invalid PostgreSQL URL {url}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The parser's complaint. When tokio-postgres's would quote the string (an unknown
        /// option's name, an unexpected character: perhaps part of a password), a stand-in of
        /// the same kind that names the option `<hidden>`.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Opening a connection failed or timed out: the server is down, unreachable, refused the
    /// login, or the database does not exist.
    #[error("cannot connect to PostgreSQL at {target} ({url})")]
    Connect {
        /// `host:port/database` (every host, comma-separated, when the URL lists several),
        /// naming only what `url` shows: a host or database it hides is `***`.
        target: String,
        /// The URL, password redacted.
        url: String,
        /// The driver's error (`tokio_postgres::Error`, a diesel `ConnectionError`) or, on a
        /// timeout, an `io::Error` of kind `TimedOut`.
        #[source]
        source: BoxError,
    },

    /// Every connection of this execution's pool stayed checked out for the whole wait timeout.
    #[error(
        "no free PostgreSQL connection to {target} within {waited:?}: all {pool_size} of this execution's pool are checked out"
    )]
    PoolExhausted {
        /// `host:port/database`.
        target: String,
        /// The pool's size.
        pool_size: usize,
        /// How long `get()` waited.
        waited: Duration,
    },

    /// The pool was closed: the execution it belonged to has ended.
    #[error("the PostgreSQL pool to {target} is closed: its execution has ended")]
    Closed {
        /// `host:port/database`.
        target: String,
    },

    /// [`IsolatedPg::use_database`](crate::IsolatedPg::use_database) was called after the pool had
    /// connected to another database.
    #[error(
        "use_database({requested}) after the pool connected to {current}: pick the database before the first get()"
    )]
    AlreadyConnected {
        /// The URL in use, password redacted.
        current: String,
        /// The URL asked for, password redacted.
        requested: String,
    },

    /// A query failed.
    #[error("PostgreSQL query failed")]
    Query(#[from] DieselError),
}

impl PgError {
    /// Whether another attempt may succeed: connection failures, timeouts, an exhausted pool,
    /// lost connections, serialization failures and other server errors are retryable; a missing
    /// or malformed URL, a misuse of the API, constraint violations (unique, foreign key, not
    /// null, check: the same row fails the same way next time) and errors raised on the client
    /// side (`NotFound`, (de)serialization) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            PgError::Connect { .. } | PgError::PoolExhausted { .. } => true,
            PgError::MissingUrl
            | PgError::InvalidUrl { .. }
            | PgError::Closed { .. }
            | PgError::AlreadyConnected { .. } => false,
            PgError::Query(e) => is_retryable_query_error(e),
        }
    }

    /// A [`JobError`] that is retryable or permanent according to [`PgError::is_retryable`],
    /// keeping this error (and its causes) as its source.
    pub fn into_job_error(self) -> JobError {
        if self.is_retryable() {
            JobError::retryable(self)
        } else {
            JobError::permanent(self)
        }
    }
}

fn is_retryable_query_error(e: &DieselError) -> bool {
    match e {
        DieselError::NotFound
        | DieselError::DeserializationError(_)
        | DieselError::SerializationError(_)
        | DieselError::QueryBuilderError(_)
        | DieselError::InvalidCString(_) => false,
        DieselError::DatabaseError(kind, _) => !matches!(
            kind,
            DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
        ),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_carries_into_job_error() {
        assert!(!PgError::MissingUrl.into_job_error().is_retryable());
        let timeout = PgError::Connect {
            target: "h:5432/db".into(),
            url: "postgres://h/db".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        };
        let job = timeout.into_job_error();
        assert!(job.is_retryable());
        assert_eq!(job.chain().0.len(), 2, "{:?}", job.chain());
        assert!(!PgError::Query(DieselError::NotFound).is_retryable());
        assert!(PgError::Query(DieselError::BrokenTransactionManager).is_retryable());
    }
}
