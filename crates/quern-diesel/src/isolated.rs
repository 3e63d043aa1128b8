//! [`IsolatedPg`]: a diesel-async pool built for one execution, on its runtime, closed after it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Object, Pool, PoolError, TimeoutType};
use diesel_async::AsyncPgConnection;
use quern_core::{JobContext, JobError, JobId, Outcome, Resource, ResourceContext, redact_url};

use crate::config::{PgConfig, clean_application_name, default_application_name};
use crate::error::PgError;
use crate::manager::{ManagerError, PgManager};

/// A PostgreSQL pool that belongs to one job execution.
///
/// Declare it as a job's resource (`type Resources = IsolatedPg;`): the worker acquires it on the
/// execution's runtime before `run` and releases it after, on every path. Acquiring builds
/// nothing but settings; the pool is created and connects on the first [`get`](Self::get), so a
/// job that never touches the database pays nothing. Releasing closes the pool: the connections
/// are gone when the execution is.
///
/// Each checkout first resets the connection (rolls back any transaction left open by raw SQL)
/// and proves it alive, and every connection carries the execution's `application_name`
/// (`quern:<job-name>:<job-id>` unless configured), so `pg_stat_activity` shows who holds it.
///
/// Why not one pool for the whole worker: tokio-postgres drives each connection from a task on
/// the runtime that opened it. Executions that run on their own runtime (`Isolation::Runtime`)
/// would share connections whose driver died with an earlier execution's runtime (`connection
/// closed`, or a silent reconnect on every checkout) or sits on a runtime nobody drives (a hang).
pub struct IsolatedPg {
    /// Built on first use (most executions of a job that rarely touches the database never
    /// need it): `application_name` from the config, else `quern:<job>:<id>`.
    application_name: OnceLock<String>,
    configured_name: Option<String>,
    job_name: String,
    job_id: JobId,
    pool_size: usize,
    wait_timeout: Duration,
    connect_timeout: Duration,
    /// Counts connections this execution opened: 0 proves laziness, more than one per checkout
    /// shows reconnects.
    opened: Arc<AtomicU64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The URL to connect to; `None` until one is configured or chosen.
    url: Option<String>,
    /// Built by the first `get()`; taken and closed by `release`.
    pool: Option<Opened>,
}

struct Opened {
    pool: Pool<PgManager>,
    /// The URL the pool connects to, to compare with a later `use_database`.
    url: String,
    /// `host:port/database`, for messages.
    target: String,
}

/// A connection checked out of an [`IsolatedPg`]; dereferences to [`AsyncPgConnection`], so
/// diesel-async queries take `&mut conn`. Dropping it returns the connection to the pool.
pub struct PooledConn(Object<PgManager>);

impl Deref for PooledConn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.0
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.0
    }
}

impl fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("id", &Object::id(&self.0))
            .finish()
    }
}

impl IsolatedPg {
    /// The resource for the execution `job` with `config`; connects to nothing. The worker calls
    /// this through [`Resource::acquire`]; tests and custom executors may call it directly.
    ///
    /// A `config` without a URL reads `DATABASE_URL` now.
    pub fn new(config: &PgConfig, job: &JobContext) -> Self {
        let url = config
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok());
        Self {
            application_name: OnceLock::new(),
            configured_name: config.application_name.clone(),
            job_name: job.name.clone(),
            job_id: job.id.clone(),
            pool_size: config.pool_size.max(1),
            wait_timeout: config.wait_timeout,
            connect_timeout: config.connect_timeout,
            opened: Arc::new(AtomicU64::new(0)),
            state: Mutex::new(State { url, pool: None }),
        }
    }

    /// A connection from this execution's pool: the first call builds the pool on the current
    /// runtime and connects; later calls reuse returned connections (reset and pinged first).
    ///
    /// Waits at most the configured wait timeout for a free connection and the connect timeout
    /// for a new one.
    pub async fn get(&self) -> Result<PooledConn, PgError> {
        let (pool, target, url) = self.pool()?;
        match pool.get().await {
            Ok(conn) => Ok(PooledConn(conn)),
            Err(e) => Err(self.pool_error(e, target, &url)),
        }
    }

    /// Connects this execution to `url` instead of the configured database, for example a
    /// tenant's database named in the job's payload. Call it before the first [`get`](Self::get):
    /// once connected, another URL is an error ([`PgError::AlreadyConnected`]); the same URL is
    /// accepted.
    pub fn use_database(&self, url: impl Into<String>) -> Result<(), PgError> {
        let url = url.into();
        parse(&url)?;
        let mut state = self.lock();
        if let Some(opened) = &state.pool {
            if opened.url != url {
                return Err(PgError::AlreadyConnected {
                    current: redact_url(&opened.url),
                    requested: redact_url(&url),
                });
            }
            return Ok(());
        }
        state.url = Some(url);
        Ok(())
    }

    /// The URL this execution connects (or will connect) to, password redacted.
    pub fn database_url_redacted(&self) -> Option<String> {
        let state = self.lock();
        match &state.pool {
            Some(opened) => Some(redact_url(&opened.url)),
            None => state.url.as_deref().map(redact_url),
        }
    }

    /// The `application_name` every connection of this execution carries.
    pub fn application_name(&self) -> &str {
        self.application_name.get_or_init(|| match &self.configured_name {
            Some(name) => clean_application_name(name),
            None => default_application_name(&self.job_name, self.job_id.as_str()),
        })
    }

    /// How many connections this execution has opened so far (0 until the first `get`).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Closes the pool: idle connections are dropped now, checked-out ones when their guard is.
    /// Called by [`Resource::release`]; calling it twice is harmless.
    pub fn close(&self) {
        if let Some(opened) = self.lock().pool.take() {
            opened.pool.close();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool, built on first use, with its target and URL for messages.
    fn pool(&self) -> Result<(Pool<PgManager>, String, String), PgError> {
        let mut state = self.lock();
        if let Some(opened) = &state.pool {
            return Ok((opened.pool.clone(), opened.target.clone(), opened.url.clone()));
        }
        let url = state.url.clone().ok_or(PgError::MissingUrl)?;
        let mut config = parse(&url)?;
        config.application_name(self.application_name());
        config.connect_timeout(self.connect_timeout);
        let target = target(&config);
        let pool = Pool::builder(PgManager::new(config, Arc::clone(&self.opened)))
            .max_size(self.pool_size)
            .wait_timeout(Some(self.wait_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a runtime is set, so building the pool cannot fail");
        state.pool = Some(Opened {
            pool: pool.clone(),
            url: url.clone(),
            target: target.clone(),
        });
        Ok((pool, target, url))
    }

    fn pool_error(&self, e: PoolError<ManagerError>, target: String, url: &str) -> PgError {
        let url = redact_url(url);
        let connect = |source: Box<dyn std::error::Error + Send + Sync>| PgError::Connect {
            target: target.clone(),
            url: url.clone(),
            source,
        };
        match e {
            PoolError::Timeout(TimeoutType::Wait) => PgError::PoolExhausted {
                target,
                pool_size: self.pool_size,
                waited: self.wait_timeout,
            },
            PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
                connect(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", self.connect_timeout),
                )))
            }
            PoolError::Backend(ManagerError::Connect(e)) => connect(Box::new(e)),
            PoolError::Backend(ManagerError::Setup(e)) => connect(Box::new(e)),
            PoolError::Backend(e @ ManagerError::Reset(_)) => connect(Box::new(e)),
            PoolError::Closed => PgError::Closed { target },
            other => connect(other.to_string().into()),
        }
    }
}

impl Resource for IsolatedPg {
    async fn acquire(cx: ResourceContext<'_>) -> Result<Self, JobError> {
        let config = cx.extensions.get::<PgConfig>().cloned().unwrap_or_default();
        Ok(Self::new(&config, cx.job))
    }

    async fn release(self, outcome: Outcome) {
        let opened = self.connections_opened();
        let pool = self.lock().pool.take();
        match pool {
            Some(opened_pool) => {
                let status = opened_pool.pool.status();
                opened_pool.pool.close();
                tracing::debug!(
                    application_name = %self.application_name(),
                    ?outcome,
                    connections_opened = opened,
                    checked_out = status.size - status.available,
                    "closed the execution's PostgreSQL pool"
                );
            }
            None => tracing::debug!(
                application_name = %self.application_name(),
                ?outcome,
                "the execution never used its PostgreSQL pool"
            ),
        }
    }
}

impl fmt::Debug for IsolatedPg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsolatedPg")
            .field("database_url", &self.database_url_redacted())
            .field("application_name", &self.application_name())
            .field("pool_size", &self.pool_size)
            .field("connections_opened", &self.connections_opened())
            .finish()
    }
}

fn parse(url: &str) -> Result<tokio_postgres::Config, PgError> {
    tokio_postgres::Config::from_str(url).map_err(|source| PgError::InvalidUrl {
        url: redact_url(url),
        source,
    })
}

/// `host:port/database` for messages; every host when the URL lists several.
fn target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                #[allow(unreachable_patterns)]
                other => format!("{other:?}:{port}"),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let db = config.get_dbname().or(config.get_user()).unwrap_or("?");
    format!("{hosts}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_host_port_and_database() {
        let c = parse("postgres://u:pw@db.example:6543/site").unwrap();
        assert_eq!(target(&c), "db.example:6543/site");
        let c = parse("host=a,b port=1 dbname=x").unwrap();
        assert_eq!(target(&c), "a:1,b:1/x");
    }

    #[test]
    fn invalid_url_is_permanent_and_redacted() {
        let e = parse("postgres://u:pw@h:notaport/db").unwrap_err();
        assert!(!e.is_retryable());
        let s = e.to_string();
        assert!(s.contains("***") && !s.contains("pw@"), "{s}");
    }
}
