//! [`PgError`]: why an execution could not get or use its PostgreSQL connection.

use std::error::Error as StdError;
use std::sync::Once;
use std::time::Duration;

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use quern_core::JobError;
use quern_core::error::{Retryability, register_classifier};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why [`IsolatedPg`](crate::IsolatedPg) could not hand out a connection, or a query failed.
///
/// Messages name the server (host, port, database) and show URLs as
/// [`redact_url`](quern_core::redact_url) prints them: the password replaced by `***`, and a
/// string it cannot read with certainty hidden whole. The underlying error is kept as
/// [`source()`](StdError::source), never flattened.
///
/// # Retry or dead-letter
///
/// `?` inside [`Job::run`](quern_core::Job::run), on a `PgError` or straight on a diesel
/// [`diesel::result::Error`] (or on an error of your own that has one of them as a `source()`),
/// gives a [`JobError`] that is retryable or permanent as [`classify`] says: quern-core's
/// conversion asks the classifiers registered with
/// [`quern_core::error::register_classifier`], and quern-diesel registers
/// [`classify`] when an [`IsolatedPg`](crate::IsolatedPg) is first set up (or when you call
/// [`install_error_classifier`]). So a query on a table that does not exist is dead-lettered after
/// one attempt, while a lost connection or a serialization failure is retried:
///
/// ```no_run
/// # use quern_core::JobError;
/// # use quern_diesel::diesel_async::RunQueryDsl;
/// # async fn run(res: &quern_diesel::IsolatedPg) -> Result<(), JobError> {
/// let mut conn = res.get().await?; // retryable: the server is down; permanent: a malformed URL
/// quern_diesel::diesel::sql_query("UPDATE sites SET archived = true")
///     .execute(&mut conn)
///     .await?; // permanent: no table `sites`; retryable: a deadlock, a closed connection
/// # Ok(()) }
/// ```
///
/// [`PgError::into_job_error`] gives the same answer without the registry.
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

/// Whether a failed diesel query may succeed on another attempt.
///
/// diesel 2.3 and diesel-async 0.9 do not pass the server's SQLSTATE on: a
/// [`DatabaseErrorKind`] names the codes diesel knows, and every other server error is
/// `Unknown`, with the server's message and, for an error the server located in the statement's
/// text, the position it points at
/// ([`statement_position`](diesel::result::DatabaseErrorInformation::statement_position)). So:
/// - a lost or closed connection (`ClosedConnection`, `UnableToSendCommand`), a serialization
///   failure, a read-only transaction (a standby after a failover) are retryable;
/// - constraint violations (unique, foreign key, not null, check, restrict, exclusion) are
///   permanent: the same row fails the same way next time;
/// - another server error with a position in the statement is permanent: it is an error *in the
///   statement* — a syntax error, an undefined table, column or function, a type mismatch
///   (SQLSTATE class 42, and the like), which the same statement hits every time;
/// - any other server error (a deadlock, a cancelled statement, a server shutting down, too many
///   connections) is retryable;
/// - errors raised on the client side (`NotFound`, (de)serialization, query building) are
///   permanent; the transaction manager's are retryable (the next attempt gets a new connection).
fn is_retryable_query_error(e: &DieselError) -> bool {
    match e {
        DieselError::NotFound
        | DieselError::DeserializationError(_)
        | DieselError::SerializationError(_)
        | DieselError::QueryBuilderError(_)
        | DieselError::InvalidCString(_) => false,
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure
            | DatabaseErrorKind::ReadOnlyTransaction => true,
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::CheckViolation
            | DatabaseErrorKind::RestrictViolation
            | DatabaseErrorKind::ExclusionViolation => false,
            _ => info.statement_position().is_none(),
        },
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_retryable_query_error(commit_error),
        _ => true,
    }
}

/// Whether an error with this SQLSTATE may go away on another attempt: permanent for the classes
/// of errors in the statement or the data — `0A` feature not supported, `21` cardinality
/// violation, `22` data exception, `23` integrity constraint violation, `42` syntax error or
/// access rule violation, `44` with-check-option violation — retryable for the others (`08`
/// connection exception, `40` transaction rollback such as serialization failures and
/// deadlocks, `53` insufficient resources, `57` operator intervention, …).
pub fn sqlstate_retryability(code: &str) -> Retryability {
    let class = code.get(..2).unwrap_or(code);
    Retryability::from_retryable(!matches!(class, "0A" | "21" | "22" | "23" | "42" | "44"))
}

/// The [`ErrorClassifier`](quern_core::error::ErrorClassifier) of quern-diesel: recognises a
/// [`PgError`] (as [`PgError::is_retryable`] says), a diesel query error and a diesel
/// `ConnectionError` (a malformed URL is permanent, a failed connection retryable), and a
/// tokio-postgres error (by its SQLSTATE: [`sqlstate_retryability`]; without one, the connection
/// failed: retryable). `None` for any other error.
pub fn classify(err: &(dyn StdError + 'static)) -> Option<Retryability> {
    if let Some(e) = err.downcast_ref::<PgError>() {
        return Some(Retryability::from_retryable(e.is_retryable()));
    }
    if let Some(e) = err.downcast_ref::<DieselError>() {
        return Some(Retryability::from_retryable(is_retryable_query_error(e)));
    }
    if let Some(e) = err.downcast_ref::<ConnectionError>() {
        let permanent = matches!(
            e,
            ConnectionError::InvalidConnectionUrl(_) | ConnectionError::InvalidCString(_)
        );
        return Some(Retryability::from_retryable(!permanent));
    }
    if let Some(e) = err.downcast_ref::<tokio_postgres::Error>() {
        return Some(match e.code() {
            Some(code) => sqlstate_retryability(code.code()),
            None => Retryability::Retryable,
        });
    }
    if let Some(e) = err.downcast_ref::<tokio_postgres::error::DbError>() {
        return Some(sqlstate_retryability(e.code().code()));
    }
    None
}

/// Registers [`classify`] with quern-core (once per process; later calls do nothing), so that
/// `?` on a diesel or PostgreSQL error inside a job gives a retryable or permanent [`JobError`]
/// as the error deserves. [`IsolatedPg`](crate::IsolatedPg) calls it when it is first set up;
/// call it at start when your jobs use diesel without `IsolatedPg`.
pub fn install_error_classifier() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| register_classifier("quern-diesel", classify));
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

    /// A server error as diesel-async reports it: a message and, when the server located the
    /// error in the statement, its position.
    struct ServerError {
        position: Option<i32>,
    }

    impl diesel::result::DatabaseErrorInformation for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            self.position
        }
    }

    fn db(kind: DatabaseErrorKind, position: Option<i32>) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(ServerError { position }))
    }

    fn class_of(e: &(dyn StdError + 'static)) -> Option<Retryability> {
        classify(e)
    }

    #[test]
    fn diesel_errors_are_classified() {
        use DatabaseErrorKind::*;
        use Retryability::{Permanent, Retryable};
        for (err, want) in [
            // Lost connections and concurrency conflicts: another attempt may pass.
            (db(ClosedConnection, None), Retryable),
            (db(UnableToSendCommand, None), Retryable),
            (db(SerializationFailure, None), Retryable),
            (db(ReadOnlyTransaction, None), Retryable),
            // A deadlock, a cancelled statement: `Unknown`, not located in the statement.
            (db(Unknown, None), Retryable),
            // A syntax error, an undefined table or column: located in the statement.
            (db(Unknown, Some(15)), Permanent),
            (db(UniqueViolation, None), Permanent),
            (db(ForeignKeyViolation, None), Permanent),
            (db(ExclusionViolation, None), Permanent),
            (DieselError::NotFound, Permanent),
            (DieselError::BrokenTransactionManager, Retryable),
            (
                DieselError::RollbackErrorOnCommit {
                    rollback_error: Box::new(DieselError::BrokenTransactionManager),
                    commit_error: Box::new(db(SerializationFailure, None)),
                },
                Retryable,
            ),
        ] {
            let text = format!("{err:?}");
            assert_eq!(class_of(&err), Some(want), "{text}");
            assert_eq!(class_of(&PgError::Query(err)), Some(want), "as a PgError: {text}");
        }
        assert_eq!(
            class_of(&ConnectionError::InvalidConnectionUrl("x".into())),
            Some(Permanent)
        );
        assert_eq!(
            class_of(&ConnectionError::BadConnection("x".into())),
            Some(Retryable)
        );
        assert_eq!(class_of(&std::io::Error::other("not ours")), None);
    }

    #[test]
    fn sqlstates_by_class() {
        use Retryability::{Permanent, Retryable};
        for (code, want) in [
            ("42P01", Permanent), // undefined_table
            ("42703", Permanent), // undefined_column
            ("42601", Permanent), // syntax_error
            ("23505", Permanent), // unique_violation
            ("22012", Permanent), // division_by_zero
            ("40001", Retryable), // serialization_failure
            ("40P01", Retryable), // deadlock_detected
            ("08006", Retryable), // connection_failure
            ("57P01", Retryable), // admin_shutdown
            ("53300", Retryable), // too_many_connections
        ] {
            assert_eq!(sqlstate_retryability(code), want, "{code}");
        }
    }

    #[test]
    fn question_mark_on_a_diesel_error_asks_the_classifier() {
        install_error_classifier();
        install_error_classifier();
        fn run(e: DieselError) -> Result<(), JobError> {
            let query: Result<(), DieselError> = Err(e);
            query?;
            Ok(())
        }
        assert!(
            !run(db(DatabaseErrorKind::Unknown, Some(15)))
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            run(db(DatabaseErrorKind::SerializationFailure, None))
                .unwrap_err()
                .is_retryable()
        );

        #[derive(Debug, thiserror::Error)]
        #[error("loading the site")]
        struct Mine(#[source] DieselError);
        let mine = || -> Result<(), JobError> {
            let loaded: Result<(), Mine> = Err(Mine(DieselError::NotFound));
            loaded?;
            Ok(())
        };
        assert!(
            !mine().unwrap_err().is_retryable(),
            "found as a source of the user's error"
        );
    }
}
