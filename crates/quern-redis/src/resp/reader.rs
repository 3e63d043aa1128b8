//! [`Reader`]: the connection a worker claims jobs on.
//!
//! Claiming is the hottest command a worker sends. Over plain TCP or a Unix socket the reader
//! writes `XREADGROUP` itself and parses the reply straight into [`Delivery`] values, without
//! first building the driver's generic reply tree: that tree (a vector and a buffer for every
//! id, field name and value) was the largest part of a worker's CPU per job. Over TLS it uses a
//! redis-rs connection and the generic reply.

use std::time::Duration;

use redis::RedisError;
use redis::aio::ConnectionManager;

use super::Target;
use super::connection::Raw;
use super::protocol::{ReadReply, encode, parse_read_reply, server_error};
use crate::error::StorageError;
use quern_core::Delivery;

/// A connection of its own for `XREADGROUP … BLOCK`; get one from
/// [`Storage::reader`](crate::Storage::reader). After an error it reconnects on the next read.
pub struct Reader {
    kind: Kind,
}

enum Kind {
    Raw(Box<Raw>),
    Managed(ConnectionManager),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Raw(raw) => match raw.io {
                Some(_) => "direct, connected",
                None => "direct, not connected",
            },
            Kind::Managed(_) => "redis-rs",
        };
        f.debug_struct("Reader").field("kind", &kind).finish()
    }
}

impl Reader {
    pub(crate) fn direct(target: Target) -> Reader {
        Reader {
            kind: Kind::Raw(Box::new(Raw {
                target,
                io: None,
                buf: Vec::with_capacity(64 * 1024),
                out: Vec::with_capacity(256),
            })),
        }
    }

    pub(crate) fn managed(conn: ConnectionManager) -> Reader {
        Reader {
            kind: Kind::Managed(conn),
        }
    }

    /// Connects now if the connection is direct (the first read would otherwise), so that an
    /// unreachable server is reported when the reader is made.
    pub(crate) async fn connect(&mut self) -> Result<(), RedisError> {
        match &mut self.kind {
            Kind::Raw(raw) => raw.ensure_connected().await,
            Kind::Managed(_) => Ok(()),
        }
    }

    /// `XREADGROUP GROUP <group> <consumer> COUNT <count> BLOCK <ms> STREAMS <stream> >`.
    pub(crate) async fn read_group(
        &mut self,
        group: &str,
        consumer: &str,
        count: usize,
        block_ms: u64,
        stream: &str,
    ) -> Result<Vec<Delivery>, StorageError> {
        match &mut self.kind {
            Kind::Raw(raw) => raw.read_group(group, consumer, count, block_ms, stream).await,
            Kind::Managed(conn) => {
                let reply: redis::Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(count)
                    .arg("BLOCK")
                    .arg(block_ms)
                    .arg("STREAMS")
                    .arg(stream)
                    .arg(">")
                    .query_async(conn)
                    .await
                    .map_err(StorageError::redis(READING))?;
                crate::delivery::parse_read(reply)
            }
        }
    }
}

const READING: &str = "reading jobs";

impl Raw {
    async fn read_group(
        &mut self,
        group: &str,
        consumer: &str,
        count: usize,
        block_ms: u64,
        stream: &str,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.out.clear();
        let (count, block) = (count.to_string(), block_ms.to_string());
        encode(
            &mut self.out,
            [
                "XREADGROUP",
                "GROUP",
                group,
                consumer,
                "COUNT",
                &count,
                "BLOCK",
                &block,
                "STREAMS",
                stream,
                ">",
            ]
            .iter()
            .map(|s| s.as_bytes()),
        );
        let limit = Duration::from_millis(block_ms) + self.target.response_timeout;
        let reply = self
            .exchange(limit, parse_read_reply)
            .await
            .map_err(StorageError::redis(READING))?;
        match reply {
            ReadReply::Deliveries(d) => Ok(d),
            ReadReply::ServerError(line) => Err(StorageError::redis(READING)(server_error(&line))),
        }
    }
}
