//! [`PgConfig`]: how the worker wants each execution's pool built.

use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};
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
#[non_exhaustive]
pub struct PgConfig {
    /// Where to connect. `None` uses the `DATABASE_URL` environment variable, so a worker
    /// configured by its environment needs no code. The variable is read once per process, when
    /// the first execution acquires its `IsolatedPg` (not when the config is built); a later change
    /// to it is not seen. A job can still pick another database for one execution with
    /// [`IsolatedPg::use_database`](crate::IsolatedPg::use_database).
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
    /// The fields above resolved (the `DATABASE_URL` fallback applied, the name cleaned) by the
    /// first acquire, and shared by every execution while they still match: acquiring an
    /// `IsolatedPg` then copies nothing. Not cloned: a clone resolves its own.
    cache: OnceLock<Arc<Settings>>,
}

impl Clone for PgConfig {
    fn clone(&self) -> Self {
        Self {
            database_url: self.database_url.clone(),
            pool_size: self.pool_size,
            wait_timeout: self.wait_timeout,
            connect_timeout: self.connect_timeout,
            application_name: self.application_name.clone(),
            cache: OnceLock::new(),
        }
    }
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            pool_size: 5,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            application_name: None,
            cache: OnceLock::new(),
        }
    }
}

impl PgConfig {
    /// The defaults: URL from `DATABASE_URL` (read once per process, by the first execution that
    /// acquires an `IsolatedPg`), 5 connections, 5 s timeouts, per-execution name.
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

/// The settings used when the worker's `Extensions` hold no [`PgConfig`]: the defaults, resolved
/// once.
static DEFAULT_CONFIG: LazyLock<PgConfig> = LazyLock::new(PgConfig::default);

/// `DATABASE_URL`, read once per process, by the first acquire that needs it.
static ENV_DATABASE_URL: LazyLock<Option<Arc<str>>> =
    LazyLock::new(|| std::env::var("DATABASE_URL").ok().map(Arc::from));

/// A [`PgConfig`] resolved for acquiring: what every execution acquired with the same config
/// shares, so that acquiring copies no string.
///
/// What an acquire reads to check that the settings still match their config comes first, so
/// that with the `Arc`'s counts it fills one cache line.
#[repr(C)]
pub(crate) struct Settings {
    /// Where to connect: the configured URL, else `DATABASE_URL`; `None` when neither is set.
    pub(crate) url: Option<Arc<str>>,
    /// The configured `pool_size`, as given (use [`pool_size`](Self::pool_size)).
    source_pool_size: usize,
    /// The configured `application_name`, as given, to compare with the config's.
    source_name: Option<Box<str>>,
    /// Whether `url` came from `DATABASE_URL` (no URL was configured).
    from_env: bool,
    pub(crate) wait_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// The configured `application_name`, cleaned; `None` for the per-execution default.
    pub(crate) application_name: Option<AppName>,
}

impl Settings {
    fn resolve(config: &PgConfig) -> Self {
        // Once per process: from now on `?` on a diesel error in a job is classified.
        crate::error::install_error_classifier();
        let url = match &config.database_url {
            Some(url) => Some(Arc::from(url.as_str())),
            None => ENV_DATABASE_URL.clone(),
        };
        Self {
            url,
            source_pool_size: config.pool_size,
            source_name: config.application_name.as_deref().map(Box::from),
            from_env: config.database_url.is_none(),
            wait_timeout: config.wait_timeout,
            connect_timeout: config.connect_timeout,
            application_name: config.application_name.as_deref().map(AppName::configured),
        }
    }

    /// Whether these settings are what `config` resolves to now (the fields are public, so they
    /// can change after the first acquire).
    fn matches(&self, config: &PgConfig) -> bool {
        let url = match &config.database_url {
            Some(url) => !self.from_env && self.url.as_deref() == Some(url.as_str()),
            None => self.from_env,
        };
        url && self.source_pool_size == config.pool_size
            && self.source_name.as_deref() == config.application_name.as_deref()
            && self.wait_timeout == config.wait_timeout
            && self.connect_timeout == config.connect_timeout
    }

    /// The most connections one execution may hold: the configured size, at least 1.
    pub(crate) fn pool_size(&self) -> usize {
        self.source_pool_size.max(1)
    }
}

impl PgConfig {
    /// The resolved settings: cached in the config by the first call and shared while the public
    /// fields still match them (no allocation, no environment read); resolved afresh otherwise.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        let cached = self.cache.get_or_init(|| Arc::new(Settings::resolve(self)));
        if cached.matches(self) {
            Arc::clone(cached)
        } else {
            Arc::new(Settings::resolve(self))
        }
    }

    /// The settings of a worker whose `Extensions` hold no `PgConfig`: the defaults, shared by the
    /// whole process.
    pub(crate) fn default_settings() -> Arc<Settings> {
        DEFAULT_CONFIG.settings()
    }
}

/// PostgreSQL keeps the first 63 bytes of an `application_name` (NAMEDATALEN - 1).
pub(crate) const MAX_APPLICATION_NAME: usize = 63;

/// An `application_name` as the server will store it, held inline: printable ASCII only
/// (PostgreSQL 15 turns anything else into `?`), at most 63 bytes. Cleaning it here means the
/// name we report is the one in `pg_stat_activity`; holding it inline means building one for
/// every execution allocates nothing.
#[derive(Clone, Copy)]
pub(crate) struct AppName {
    bytes: [u8; MAX_APPLICATION_NAME],
    len: u8,
}

impl AppName {
    const EMPTY: Self = Self {
        bytes: [0; MAX_APPLICATION_NAME],
        len: 0,
    };

    /// A configured name, cleaned and truncated.
    pub(crate) fn configured(name: &str) -> Self {
        let mut out = Self::EMPTY;
        out.push_clean(name, MAX_APPLICATION_NAME);
        out
    }

    /// `quern:<job-name>:<job-id>`, shortening the job name (never the id, which makes it unique)
    /// to fit in 63 bytes.
    pub(crate) fn per_execution(job_name: &str, job_id: &str) -> Self {
        const PREFIX: &[u8] = b"quern:";
        let id_len = if job_id.is_ascii() {
            job_id.len().min(MAX_APPLICATION_NAME)
        } else {
            job_id.chars().take(MAX_APPLICATION_NAME).count()
        };
        let budget = MAX_APPLICATION_NAME.saturating_sub(PREFIX.len() + 1 + id_len);
        let mut out = Self::EMPTY;
        out.bytes[..PREFIX.len()].copy_from_slice(PREFIX);
        out.len = PREFIX.len() as u8;
        out.push_clean(job_name, budget);
        out.bytes[usize::from(out.len)] = b':';
        out.len += 1;
        out.push_clean(job_id, MAX_APPLICATION_NAME);
        out
    }

    /// Appends at most `max_chars` characters of `s`, each printable ASCII character as itself and
    /// any other as `?` (one byte each), stopping when the buffer is full.
    #[inline]
    fn push_clean(&mut self, s: &str, max_chars: usize) {
        let start = usize::from(self.len);
        let limit = max_chars.min(MAX_APPLICATION_NAME - start);
        let bytes = s.as_bytes();
        // Job names and ids are printable ASCII: one byte per character, copied as they are.
        let head = &bytes[..bytes.len().min(limit)];
        let written = if all_printable(head) {
            self.bytes[start..start + head.len()].copy_from_slice(head);
            head.len()
        } else {
            // A character is its first byte: skip UTF-8 continuation bytes, and anything but
            // printable ASCII (a control character, or the lead byte of any other) becomes `?`.
            let mut n = 0;
            for &b in bytes.iter().filter(|&&b| b & 0xC0 != 0x80).take(limit) {
                self.bytes[start + n] = if is_printable(b) { b } else { b'?' };
                n += 1;
            }
            n
        };
        self.len += u8::try_from(written).expect("at most 63 bytes");
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("an AppName holds printable ASCII only")
    }
}

/// Whether `b` is printable ASCII: `' '` to `'~'`.
fn is_printable(b: u8) -> bool {
    (b' '..=b'~').contains(&b)
}

/// Whether every byte of `bytes` is printable ASCII, tested eight at a time: names are short, too
/// short for the compiler's vectorized loops.
fn all_printable(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut bad = 0;
    for chunk in &mut chunks {
        let x = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8 bytes"));
        // Some byte gets its high bit set if one is 0x80 or above (`x`); else, with no carry
        // between bytes, if one is below 0x20 (subtracting 0x20 borrows) or is 0x7F (adding 1
        // reaches 0x80). A borrow can set the bit of the next byte too, but only when some byte
        // is below 0x20 anyway.
        bad |= x | x.wrapping_sub(ONES * 0x20) | x.wrapping_add(ONES);
    }
    bad & HIGH == 0 && chunks.remainder().iter().all(|&b| is_printable(b))
}

/// `name` as the server will store it, as a `String`: the reference [`AppName::configured`] is
/// tested against.
#[cfg(test)]
pub(crate) fn clean_application_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(MAX_APPLICATION_NAME)
        .collect()
}

/// `quern:<job-name>:<job-id>` as a `String`: the reference [`AppName::per_execution`] is tested
/// against.
#[cfg(test)]
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
    fn inline_names_equal_the_string_ones() {
        let ulid = "01JQ8X7K2M3N4P5Q6R7S8T9V0W";
        let (long_name, long_id) = ("x".repeat(100), "id-".repeat(30));
        let cases = [
            ("send", ulid),
            (long_name.as_str(), ulid),
            ("héllo wörld\t\u{1F600}", "1"),
            ("del\u{7F}and tab\t", "ïd"),
            ("ünïcode_job_name_that_is_rather_long_for_a_name", ulid),
            ("job", long_id.as_str()),
            (
                "job",
                "ïd\nwith ünusual bytes and a length well past sixty-three bytes in all",
            ),
            ("", ""),
        ];
        for (name, id) in cases {
            let inline = AppName::per_execution(name, id);
            assert_eq!(
                inline.as_str(),
                default_application_name(name, id),
                "{name:?} {id:?}"
            );
            assert!(inline.as_str().len() <= MAX_APPLICATION_NAME);
            let configured = AppName::configured(name);
            assert_eq!(configured.as_str(), clean_application_name(name), "{name:?}");
            let configured = AppName::configured(id);
            assert_eq!(configured.as_str(), clean_application_name(id), "{id:?}");
        }
    }

    #[test]
    fn all_printable_agrees_with_the_byte_test() {
        for len in 0..=24 {
            for at in 0..len {
                for b in 0..=u8::MAX {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = bytes.iter().all(|&b| is_printable(b));
                    assert_eq!(all_printable(&bytes), expected, "{bytes:?}");
                    // And next to a space, the lowest printable byte, which a borrow reaches.
                    bytes.iter_mut().for_each(|x| *x = b' ');
                    bytes[at] = b;
                    let expected = bytes.iter().all(|&b| is_printable(b));
                    assert_eq!(all_printable(&bytes), expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn settings_are_shared_while_the_config_matches() {
        let mut config = PgConfig::new()
            .database_url("postgres://a@h/db")
            .application_name("x");
        let first = config.settings();
        assert!(Arc::ptr_eq(&first, &config.settings()));
        assert_eq!(first.url.as_deref(), Some("postgres://a@h/db"));
        assert_eq!(
            first.application_name.map(|n| n.as_str().to_owned()).as_deref(),
            Some("x")
        );

        // A clone resolves its own; a changed field is seen at once.
        assert!(!Arc::ptr_eq(&first, &config.clone().settings()));
        config.pool_size = 0;
        let changed = config.settings();
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(changed.pool_size(), 1);
        config.database_url = Some("postgres://b@h/db".into());
        assert_eq!(config.settings().url.as_deref(), Some("postgres://b@h/db"));
        config.application_name = None;
        assert!(config.settings().application_name.is_none());
        config.database_url = None;
        assert_eq!(config.settings().url, *ENV_DATABASE_URL);
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = PgConfig::new().database_url("postgres://u:hunter2@h/db");
        let s = format!("{c:?}");
        assert!(s.contains("u:***@h/db") && !s.contains("hunter2"), "{s}");
    }
}
