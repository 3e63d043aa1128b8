//! Storage errors.

use quern_core::DecodeError;

use crate::keys::InvalidQueueName;

/// Something went wrong talking to Redis or preparing what to send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Redis could not be reached at all.
    #[error(
        "cannot connect to Redis at {url}; start one (for example `redis-server --port 6379`) or \
         point REDIS_URL / --redis-url at a running server"
    )]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A command failed (connection dropped, timeout, or an error reply).
    #[error("Redis command failed ({context})")]
    Redis {
        /// What Quern was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// The payload could not be encoded or is too large.
    #[error("job payload refused")]
    Payload(#[source] DecodeError),
    /// A queue name that cannot be used.
    #[error(transparent)]
    QueueName(#[from] InvalidQueueName),
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
        move |source| StorageError::Redis { context, source }
    }

    /// Whether trying again later may succeed (Redis unreachable, timed out, restarting).
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Connect { .. } => true,
            StorageError::Redis { source, .. } => {
                source.is_io_error()
                    || source.is_timeout()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || matches!(
                        source.code(),
                        Some("LOADING" | "NOSCRIPT" | "NOGROUP" | "TRYAGAIN" | "MASTERDOWN")
                    )
            }
            StorageError::Payload(_) | StorageError::QueueName(_) | StorageError::Protocol { .. } => false,
        }
    }

    /// The Redis error code of an error reply (`NOGROUP`, `NOSCRIPT`, …), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            StorageError::Redis { source, .. } => source.code(),
            _ => None,
        }
    }
}
