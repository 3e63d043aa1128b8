//! Storage errors.

use quern_core::DecodeError;

use crate::keys::InvalidQueueName;

/// Something went wrong talking to Redis or preparing what to send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Redis could not be reached at all.
    #[error("cannot connect to Redis at {url}: {}", connect_advice(source))]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A command failed (connection dropped, timeout, or an error reply).
    #[error("Redis command failed ({context}){}", code_advice(code.as_deref()))]
    Redis {
        /// What Quern was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
        /// The error code of the reply that failed (`NOGROUP`, `WRONGTYPE`, …), also when it
        /// came inside a pipeline, where the driver reports codes it does not know as none.
        code: Option<String>,
    },
    /// Redis refused a write because its memory is full: `used_memory` reached `maxmemory` under
    /// the `noeviction` policy (the `OOM` error reply). An enqueue refused this way wrote
    /// nothing. Retryable: memory frees as workers complete jobs.
    #[error(
        "Redis is out of memory and refused a write while {context} (used memory > maxmemory \
         under policy noeviction; a refused enqueue writes nothing). Free memory, raise maxmemory \
         (`CONFIG SET maxmemory …`), or let workers drain the queues, then try again"
    )]
    OutOfMemory {
        /// What Quern was doing.
        context: &'static str,
        /// The driver's error (the `OOM` reply).
        #[source]
        source: redis::RedisError,
    },
    /// The payload could not be encoded or is too large.
    #[error("job payload refused")]
    Payload(#[source] DecodeError),
    /// A queue name that cannot be used.
    #[error(transparent)]
    QueueName(#[from] InvalidQueueName),

    /// A caller-supplied job id breaks a rule ([`JobId::caller`](quern_core::JobId::caller)).
    #[error(transparent)]
    JobId(#[from] quern_core::InvalidJobId),

    /// A queue no job was ever enqueued to.
    #[error("unknown queue {queue:?}: the known queues are {known:?}")]
    UnknownQueue {
        /// The name given.
        queue: String,
        /// The queues that exist.
        known: Vec<String>,
    },

    /// Enqueue options that cannot be honoured as given.
    #[error("invalid enqueue options: {0}")]
    Options(String),
    /// Something this version of Quern's Redis storage cannot do (a settle kind added to
    /// `quern-core` after it was written).
    #[error("quern-redis cannot {what}: upgrade quern-redis to the version of quern-core in use")]
    Unsupported {
        /// What was asked.
        what: String,
    },
    /// A reply that Quern did not expect (another program changed Quern's keys?).
    #[error("unexpected reply from Redis while {context}: {detail}")]
    Protocol {
        /// What Quern was doing.
        context: &'static str,
        /// What came back.
        detail: String,
    },
}

impl StorageError {
    pub(crate) fn redis(context: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| {
            let code = source.code().map(str::to_owned).or_else(|| {
                let errors = source.clone().into_server_errors()?;
                errors.first().map(|(_, e)| e.code().to_owned())
            });
            if code.as_deref() == Some("OOM") {
                return StorageError::OutOfMemory { context, source };
            }
            StorageError::Redis {
                context,
                source,
                code,
            }
        }
    }

    /// Whether trying again later may succeed (Redis unreachable, timed out, restarting).
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Connect { .. } | StorageError::OutOfMemory { .. } => true,
            StorageError::Redis { source, code, .. } => {
                source.is_io_error()
                    || source.is_timeout()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || matches!(
                        code.as_deref(),
                        Some("LOADING" | "NOSCRIPT" | "NOGROUP" | "TRYAGAIN" | "MASTERDOWN")
                    )
            }
            StorageError::Payload(_)
            | StorageError::QueueName(_)
            | StorageError::JobId(_)
            | StorageError::UnknownQueue { .. }
            | StorageError::Options(_)
            | StorageError::Unsupported { .. }
            | StorageError::Protocol { .. } => false,
        }
    }

    /// Whether Redis refused a write because its memory is full (`OOM`: `maxmemory` reached
    /// under `noeviction`). Nothing of a refused enqueue was written.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, StorageError::OutOfMemory { .. })
    }

    /// The Redis error code of an error reply (`NOGROUP`, `NOSCRIPT`, `OOM`, …), if any, also
    /// from inside a pipeline.
    pub fn code(&self) -> Option<&str> {
        match self {
            StorageError::OutOfMemory { .. } => Some("OOM"),
            StorageError::Redis { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl quern_core::BrokerError for StorageError {
    fn is_retryable(&self) -> bool {
        StorageError::is_retryable(self)
    }

    /// The queue's consumer group is missing (Redis restarted without persistence, or someone
    /// deleted the stream): [`Broker::prepare`](quern_core::Broker::prepare) creates it again.
    fn needs_prepare(&self) -> bool {
        self.code() == Some("NOGROUP")
    }
}

/// What to do about a connection that failed, from what failed (never from the URL: it may hold
/// a password).
fn connect_advice(e: &redis::RedisError) -> &'static str {
    if e.kind() == redis::ErrorKind::InvalidClientConfig {
        "the URL does not parse: it must look like redis://[user[:password]@]host[:port][/db] \
         (rediss:// for TLS; percent-encode `#`, `/`, `?`, `@` and `:` in a password)"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS") {
        "the server refused the user name or password"
    } else if e.code() == Some("NOAUTH") {
        "the server needs a password: put it in the URL, as redis://:PASSWORD@host:port"
    } else if e.is_connection_refusal() {
        "nothing listens there: start a server (for example `redis-server --port 6379`) or point \
         REDIS_URL / --redis-url at a running one"
    } else if e.is_timeout() {
        "no answer in time: a wrong host or a firewall, or a server that expects TLS \
         (use rediss://) or plain TCP (use redis://)"
    } else {
        "point REDIS_URL / --redis-url at a running server"
    }
}

/// What an error reply asks the operator to do, for the codes that are about configuration.
fn code_advice(code: Option<&str>) -> &'static str {
    match code {
        Some("NOAUTH") => ": the server needs a password: put it in the URL, as redis://:PASSWORD@host:port",
        Some("WRONGPASS") => ": the server refused the user name or password",
        Some("NOPERM") => {
            ": the Redis user lacks a permission Quern needs (see docs/security.md for the ACL rules)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(source: redis::RedisError) -> String {
        StorageError::Connect {
            url: "redis://:***@db:6379".into(),
            source,
        }
        .to_string()
    }

    #[test]
    fn a_connection_error_says_what_is_wrong_and_what_to_do() {
        let bad_url =
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "Redis URL did not parse"));
        assert!(connect(bad_url).contains("the URL does not parse"));
        let refused = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(connect(refused).contains("nothing listens there"));
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(connect(timeout).contains("no answer in time"));
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "invalid password"));
        assert!(connect(auth).contains("refused the user name or password"));
        for (code, advice) in [
            ("NOAUTH", "needs a password"),
            ("WRONGPASS", "refused"),
            ("NOPERM", "docs/security.md"),
        ] {
            let e = StorageError::Redis {
                context: "listing queues",
                source: redis::RedisError::from((redis::ErrorKind::Io, "x")),
                code: Some(code.into()),
            };
            assert!(e.to_string().contains(advice), "{code}: {e}");
        }
    }
}
