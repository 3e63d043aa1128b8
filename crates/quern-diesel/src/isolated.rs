//! [`IsolatedPg`]: a diesel-async pool built for one execution, on its runtime, closed after it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use deadpool::Runtime;
use deadpool::managed::{Object, Pool, PoolError, TimeoutType};
use diesel_async::AsyncPgConnection;
use quern_core::{JobContext, JobError, Outcome, Resource, ResourceContext, redact_url};

use crate::config::{AppName, PgConfig, Settings};
use crate::error::PgError;
use crate::manager::{ManagerError, PgManager};

/// A PostgreSQL pool that belongs to one job execution.
///
/// Declare it as a job's resource (`type Resources = IsolatedPg;`): the worker acquires it on the
/// execution's runtime before `run` and releases it after, on every path. Acquiring builds
/// nothing: it shares the settings the worker's [`PgConfig`] was resolved to (once, by the first
/// execution) and writes the execution's `application_name` into an inline buffer, without
/// allocating or reading the environment. The pool is created and connects on the first
/// [`get`](Self::get), so a job that never touches the database pays next to nothing. Releasing
/// closes the pool: the connections are gone when the execution is.
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
    /// Shared with every execution acquired with the same config.
    settings: Arc<Settings>,
    /// `application_name` from the config, else `quern:<job>:<id>`; inline, so that neither the
    /// job's name nor its id is kept.
    application_name: AppName,
    /// Counts connections this execution opened: 0 proves laziness, more than one per checkout
    /// shows reconnects. Created with the pool; kept after it is closed.
    opened: OnceLock<Arc<AtomicU64>>,
    state: Mutex<State>,
}

struct State {
    /// The URL `use_database` chose; `None` for the settings' own, which is shared, not copied
    /// (nor even its count touched) until `get` builds the pool.
    url: Option<Arc<str>>,
    /// Built by the first `get()`; taken and closed by `release`.
    pool: Option<Opened>,
}

struct Opened {
    pool: Pool<PgManager>,
    /// The URL the pool connects to, to compare with a later `use_database`.
    url: Arc<str>,
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
    /// A `config` without a URL uses `DATABASE_URL`, read once per process by the first
    /// execution that needs it. The first call with a given `config` resolves it and keeps the
    /// result in it; later calls with the same, unchanged `config` share that and allocate nothing.
    pub fn new(config: &PgConfig, job: &JobContext) -> Self {
        Self::with_settings(config.settings(), job)
    }

    fn with_settings(settings: Arc<Settings>, job: &JobContext) -> Self {
        let application_name = match &settings.application_name {
            Some(name) => *name,
            None => AppName::per_execution(&job.name, job.id.as_str()),
        };
        Self {
            settings,
            application_name,
            opened: OnceLock::new(),
            state: Mutex::new(State {
                url: None,
                pool: None,
            }),
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
            if *opened.url != *url {
                return Err(PgError::AlreadyConnected {
                    current: redact_url(&opened.url),
                    requested: redact_url(&url),
                });
            }
            return Ok(());
        }
        state.url = Some(Arc::from(url));
        Ok(())
    }

    /// The URL this execution connects (or will connect) to, password redacted.
    pub fn database_url_redacted(&self) -> Option<String> {
        let state = self.lock();
        match &state.pool {
            Some(opened) => Some(redact_url(&opened.url)),
            None => (state.url.as_deref())
                .or(self.settings.url.as_deref())
                .map(redact_url),
        }
    }

    /// The `application_name` every connection of this execution carries.
    pub fn application_name(&self) -> &str {
        self.application_name.as_str()
    }

    /// How many connections this execution has opened so far (0 until the first `get`).
    pub fn connections_opened(&self) -> u64 {
        self.opened.get().map_or(0, |n| n.load(Ordering::Relaxed))
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
    fn pool(&self) -> Result<(Pool<PgManager>, String, Arc<str>), PgError> {
        let mut state = self.lock();
        if let Some(opened) = &state.pool {
            return Ok((
                opened.pool.clone(),
                opened.target.clone(),
                Arc::clone(&opened.url),
            ));
        }
        let url = (state.url.as_ref())
            .or(self.settings.url.as_ref())
            .map(Arc::clone)
            .ok_or(PgError::MissingUrl)?;
        let mut config = parse(&url)?;
        config.application_name(self.application_name());
        config.connect_timeout(self.settings.connect_timeout);
        let target = target(&config, &redact_url(&url));
        let opened = Arc::clone(self.opened.get_or_init(|| Arc::new(AtomicU64::new(0))));
        let pool = Pool::builder(PgManager::new(config, opened))
            .max_size(self.settings.pool_size())
            .wait_timeout(Some(self.settings.wait_timeout))
            .create_timeout(Some(self.settings.connect_timeout))
            .recycle_timeout(Some(self.settings.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a runtime is set, so building the pool cannot fail");
        state.pool = Some(Opened {
            pool: pool.clone(),
            url: Arc::clone(&url),
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
                pool_size: self.settings.pool_size(),
                waited: self.settings.wait_timeout,
            },
            PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
                connect(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", self.settings.connect_timeout),
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
    /// Allocates nothing and reads no environment variable, once the worker's config has been
    /// resolved by the first execution (see [`IsolatedPg::new`]).
    async fn acquire(cx: ResourceContext<'_>) -> Result<Self, JobError> {
        let settings = match cx.extensions.get::<PgConfig>() {
            Some(config) => config.settings(),
            None => PgConfig::default_settings(),
        };
        Ok(Self::with_settings(settings, cx.job))
    }

    /// A database to connect to must be configured: a [`PgConfig`] extension with a URL, or
    /// `DATABASE_URL`.
    fn check(extensions: &quern_core::Extensions) -> Result<(), String> {
        let settings = match extensions.get::<PgConfig>() {
            Some(config) => config.settings(),
            None => PgConfig::default_settings(),
        };
        match settings.url {
            Some(_) => Ok(()),
            None => Err(
                "it declares `IsolatedPg` and no database is configured: set DATABASE_URL, \
                 or give the worker `.extension(PgConfig::new().database_url(..))`"
                    .to_owned(),
            ),
        }
    }

    /// Closes the pool if `get` built one. Releasing an unused one allocates nothing: the debug
    /// event's fields are only evaluated when a subscriber wants it.
    async fn release(mut self, outcome: Outcome) {
        let opened = self.connections_opened();
        // Owned: no locking needed (nor its atomic operations).
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let pool = state.pool.take();
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
            .field("pool_size", &self.settings.pool_size())
            .field("connections_opened", &self.connections_opened())
            .finish()
    }
}

fn parse(url: &str) -> Result<tokio_postgres::Config, PgError> {
    tokio_postgres::Config::from_str(url).map_err(|source| PgError::InvalidUrl {
        url: redact_url(url),
        source: without_quotes_of_the_input(source),
    })
}

/// A parse error that does not quote the connection string: tokio-postgres names an unknown
/// option (`password=pa ss=word` gives "unknown option `ss`") or the character it did not
/// expect, and either may be part of a password. Such an error is replaced by a stand-in of the
/// same kind whose option is named `<hidden>`; every other parse error quotes nothing and is kept.
fn without_quotes_of_the_input(e: tokio_postgres::Error) -> tokio_postgres::Error {
    let quotes_input = std::error::Error::source(&e).is_some_and(|cause| {
        let cause = cause.to_string();
        cause.starts_with("unknown option") || cause.starts_with("unexpected character")
    });
    if !quotes_input {
        return e;
    }
    match tokio_postgres::Config::from_str("<hidden>=x") {
        Err(stand_in) => stand_in,
        Ok(_) => e,
    }
}

/// `host:port/database` for messages; every host when the URL lists several.
///
/// It names only what `redacted` (the URL as printed) shows: tokio-postgres ends the userinfo at
/// the first `@`, so a password holding one (`app:pa@ss@db`) leaves its tail in the host it
/// parses (`ss@db`), which the redacted URL hides. Anything the redacted URL does not contain
/// is printed as `***`.
fn target(config: &tokio_postgres::Config, redacted: &str) -> String {
    let shown = |s: &str| -> String {
        if redacted.contains(s) {
            s.to_owned()
        } else {
            "***".to_owned()
        }
    };
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(h) => format!("{}:{port}", shown(h)),
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
    let db = config
        .get_dbname()
        .or(config.get_user())
        .map_or_else(|| "?".to_owned(), shown);
    format!("{hosts}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_host_port_and_database() {
        let target_of = |url: &str| target(&parse(url).unwrap(), &redact_url(url));
        assert_eq!(
            target_of("postgres://u:pw@db.example:6543/site"),
            "db.example:6543/site"
        );
        assert_eq!(target_of("host=a,b port=1 dbname=x"), "a:1,b:1/x");
        assert_eq!(target_of("postgres://u@h"), "h:5432/u");
    }

    #[test]
    fn target_names_nothing_the_redacted_url_hides() {
        // tokio-postgres reads the host `ss@db` and the database `x@db/site` here.
        for url in [
            "postgres://app:s3cr@3tPW@db/site",
            "postgres://app:s3cr@3tPW/x@db/site",
        ] {
            let c = parse(url).unwrap();
            let t = target(&c, &redact_url(url));
            assert!(!t.contains("3tPW"), "{url} gave {t}");
        }
    }

    #[test]
    fn parse_errors_do_not_quote_the_input() {
        for url in [
            "host=h password=s3cr 3tPW=x",
            "host=h password=s3cr 3tPW word",
            "postgres://h/db?password=s3cr&3tPW=x",
        ] {
            let e = parse(url).unwrap_err();
            let chain = quern_core::ErrorChain::of(&e).to_string();
            assert!(
                !chain.contains("3tPW") && !chain.contains("`w`"),
                "{url}: {chain}"
            );
            assert!(chain.contains("invalid connection string"), "{url}: {chain}");
        }
        let e = parse("host=h port=x").unwrap_err();
        let chain = quern_core::ErrorChain::of(&e).to_string();
        assert!(chain.contains("invalid value for option `port`"), "{chain}");
    }

    #[test]
    fn invalid_url_is_permanent_and_redacted() {
        let e = parse("postgres://u:pw@h:notaport/db").unwrap_err();
        assert!(!e.is_retryable());
        let s = e.to_string();
        assert!(s.contains("***") && !s.contains("pw@"), "{s}");
    }
}
