//! [`PgConfig`]: how the worker wants each execution's pool built.

use std::fmt;
use std::time::Duration;

use quern_core::redact_url;

/// Settings for the per-execution pools of [`IsolatedPg`](crate::IsolatedPg).
///
/// The worker stores one in its [`Extensions`](quern_core::Extensions); when none is stored every
/// field takes its default.
///
/// ```
/// use std::time::Duration;
/// use quern_diesel::PgConfig;
///
/// let config = PgConfig::new()
///     .database_url("postgres://app@db:5432/site")
///     .pool_size(2)
///     .wait_timeout(Duration::from_secs(1));
/// assert_eq!(config.pool_size, 2);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// Where to connect. `None` reads the `DATABASE_URL` environment variable when the resource is
    /// acquired, so a worker configured by its environment needs no code. A job can still pick
    /// another database for one execution with [`IsolatedPg::use_database`](crate::IsolatedPg::use_database).
    pub database_url: Option<String>,
    /// The most connections one execution may hold at once (deadpool has no overflow: a hard cap).
    /// A job that runs queries concurrently needs more than one; most need one. Default 5.
    pub pool_size: usize,
    /// How long `get()` waits for a free connection when all `pool_size` are checked out, so a job
    /// that leaks guards fails instead of hanging. Default 5 s.
    pub wait_timeout: Duration,
    /// How long opening one connection (TCP, TLS-less startup, authentication) or resetting a
    /// returned one may take: an unreachable server becomes an error, not a hang. Default 5 s.
    pub connect_timeout: Duration,
    /// The `application_name` of every connection, shown in `pg_stat_activity` and the server log.
    /// `None` means `quern:<job-name>:<job-id>`, so an operator can tell which execution holds a
    /// connection. Either way it replaces any `application_name` given in the URL.
    pub application_name: Option<String>,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            pool_size: 5,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            application_name: None,
        }
    }
}

impl PgConfig {
    /// The defaults: URL from `DATABASE_URL`, 5 connections, 5 s timeouts, per-execution name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects to `url` instead of `DATABASE_URL`.
    #[must_use]
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Sets the most connections one execution may hold (at least 1).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets how long `get()` waits for a free connection.
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets how long opening or resetting one connection may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the `application_name` of every connection (truncated to 63 bytes).
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("pool_size", &self.pool_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// PostgreSQL keeps the first 63 bytes of an `application_name` (NAMEDATALEN - 1).
pub(crate) const MAX_APPLICATION_NAME: usize = 63;

/// `name` as the server will store it: printable ASCII only (PostgreSQL 15 turns anything else
/// into `?`), at most 63 bytes. Doing it here means the name we report is the one in
/// `pg_stat_activity`.
pub(crate) fn clean_application_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(MAX_APPLICATION_NAME)
        .collect()
}

/// `quern:<job-name>:<job-id>`, shortening the job name (never the id, which makes it unique) to
/// fit in 63 bytes.
pub(crate) fn default_application_name(job_name: &str, job_id: &str) -> String {
    let id = clean_application_name(job_id);
    let budget = MAX_APPLICATION_NAME.saturating_sub("quern:".len() + 1 + id.len());
    let name: String = clean_application_name(job_name).chars().take(budget).collect();
    clean_application_name(&format!("quern:{name}:{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_keeps_the_id_and_fits() {
        let id = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(default_application_name("send", id), format!("quern:send:{id}"));
        let long = default_application_name(&"x".repeat(100), id);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with(id));
        assert_eq!(default_application_name("héllo", "1"), "quern:h?llo:1");
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = PgConfig::new().database_url("postgres://u:hunter2@h/db");
        let s = format!("{c:?}");
        assert!(s.contains("u:***@h/db") && !s.contains("hunter2"), "{s}");
    }
}
