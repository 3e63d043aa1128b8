//! The deadpool manager behind [`IsolatedPg`](crate::IsolatedPg): opens connections on the
//! calling runtime, and resets and pings a connection before handing it out again.
//!
//! Why not diesel-async's own deadpool manager: it keeps the connect error's cause, resets before
//! reuse ([`reset`]) and configures connections through `tokio_postgres::Config`; the reasoning is
//! in `docs/isolated-pg.md` ("Why quern-diesel has its own deadpool manager").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use diesel::ConnectionResult;
use diesel::result::{ConnectionError, QueryResult};
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager,
};

/// Why the manager could not create or recycle a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManagerError {
    /// tokio-postgres could not connect (refused, unreachable, authentication, no such database).
    #[error(transparent)]
    Connect(tokio_postgres::Error),
    /// Connected, but diesel-async's setup queries failed.
    #[error(transparent)]
    Setup(ConnectionError),
    /// The reset or ping of a returned connection failed: it is dropped.
    #[error("resetting a returned connection failed: {0}")]
    Reset(diesel::result::Error),
}

pub(crate) struct PgManager {
    config: tokio_postgres::Config,
    opened: Arc<AtomicU64>,
}

impl PgManager {
    pub(crate) fn new(config: tokio_postgres::Config, opened: Arc<AtomicU64>) -> Self {
        Self { config, opened }
    }

    async fn connect(&self) -> Result<AsyncPgConnection, ManagerError> {
        let (client, connection) = self
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(ManagerError::Connect)?;
        // The connection's driver task is spawned here, on the current runtime: the execution's.
        let conn: ConnectionResult<AsyncPgConnection> =
            AsyncPgConnection::try_from_client_and_connection(client, connection).await;
        let conn = conn.map_err(ManagerError::Setup)?;
        let n = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::trace!(application_name = ?self.config.get_application_name(), opened = n, "opened PostgreSQL connection");
        Ok(conn)
    }
}

impl Manager for PgManager {
    type Type = AsyncPgConnection;
    type Error = ManagerError;

    async fn create(&self) -> Result<AsyncPgConnection, ManagerError> {
        self.connect().await
    }

    async fn recycle(&self, conn: &mut AsyncPgConnection, _: &Metrics) -> RecycleResult<ManagerError> {
        // As diesel-async's own manager: a connection whose diesel transaction was abandoned
        // mid-way (future dropped, guard leaked inside `transaction`) is not trusted again.
        if std::thread::panicking() || AnsiTransactionManager::is_broken_transaction_manager(conn) {
            return Err(RecycleError::message(
                "connection left in a broken diesel transaction",
            ));
        }
        reset(conn)
            .await
            .map_err(|e| RecycleError::Backend(ManagerError::Reset(e)))
    }
}

/// Makes a returned connection safe for the next user, and proves it is alive (pre-ping).
///
/// deadpool calls this when the connection is checked out again, before anyone can use it. A
/// transaction opened with raw SQL (`BEGIN` through `batch_execute` or `sql_query`) is invisible
/// to diesel's transaction manager, so it would otherwise go back to the pool still open, holding
/// its locks, and the next user would run inside it.
///
/// One round trip, `BEGIN; ROLLBACK` as a simple query, covers every state the session can be in:
/// - idle: opens and ends an empty transaction (no warning, unlike a bare `ROLLBACK`, which makes
///   the server log "there is no transaction in progress" on every checkout);
/// - inside a transaction: `BEGIN` warns "already in progress", `ROLLBACK` ends the leftover one;
/// - inside a failed transaction: `BEGIN` errors and the rest of the string is skipped, so a
///   second round trip sends `ROLLBACK` alone.
///
/// A closed connection fails both, and deadpool drops it and opens a new one. The one exception
/// is a transaction diesel itself tracks as open and healthy, which can only be a
/// `begin_test_transaction`: that one is the caller's on purpose, so it only gets a ping.
///
/// Session state other than the transaction (`SET`, temporary tables, advisory locks) is not
/// reset: `DISCARD ALL` would also drop the prepared statements diesel-async caches. The pool
/// lives for one execution, so such state never crosses into another job.
pub(crate) async fn reset(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    let diesel_tx = AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?
        .is_some();
    if diesel_tx {
        return diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
            .execute(conn)
            .await
            .map(drop);
    }
    match conn.batch_execute("BEGIN; ROLLBACK").await {
        Ok(()) => Ok(()),
        Err(first) => {
            tracing::debug!(error = %first, "returned connection was in a failed transaction; rolling back");
            conn.batch_execute("ROLLBACK").await
        }
    }
}
