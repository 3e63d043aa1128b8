//! The direct connection: where it connects, its handshake, and one command-reply exchange.

use std::path::PathBuf;
use std::task::Poll;
use std::time::Duration;

use redis::{ConnectionAddr, RedisError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::protocol::{Parsed, encode, parse_line_reply};

/// Where and how the direct connection connects.
pub(crate) struct Target {
    pub addr: Addr,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub connect_timeout: Duration,
    /// How long a reply may take beyond the block time.
    pub response_timeout: Duration,
}

pub(crate) enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Addr {
    /// The address when the direct connection can serve it (not TLS).
    pub(crate) fn direct(addr: &ConnectionAddr) -> Option<Addr> {
        match addr {
            ConnectionAddr::Tcp(host, port) => Some(Addr::Tcp(host.clone(), *port)),
            ConnectionAddr::Unix(path) => Some(Addr::Unix(path.clone())),
            _ => None,
        }
    }
}

pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(super) struct Raw {
    pub(super) target: Target,
    /// `None` until connected, and again after any failure or an interrupted read (the stream
    /// may hold part of a reply): the next read reconnects.
    pub(super) io: Option<Box<dyn Stream>>,
    /// Bytes read and not yet parsed.
    pub(super) buf: Vec<u8>,
    /// The command being written.
    pub(super) out: Vec<u8>,
}

impl Raw {
    pub(super) async fn ensure_connected(&mut self) -> Result<(), RedisError> {
        if let Some(io) = self.io.as_mut() {
            // A connection the server closed while it sat idle (its `timeout`, `CLIENT KILL`, a
            // restart) is replaced before use, not discovered halfway through a command.
            if self.buf.is_empty() && is_open(io).await {
                return Ok(());
            }
            self.io = None;
        }
        let t = &self.target;
        let io: Box<dyn Stream> = match &t.addr {
            Addr::Tcp(host, port) => {
                let s = within(t.connect_timeout, TcpStream::connect((host.as_str(), *port))).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Addr::Unix(path) => Box::new(within(t.connect_timeout, UnixStream::connect(path)).await?),
        };
        self.io = Some(io);
        self.buf.clear();
        let connect_timeout = self.target.connect_timeout;
        let handshake = async {
            if let Some(password) = self.target.password.clone() {
                let mut args = vec!["AUTH".to_owned()];
                args.extend(self.target.username.clone());
                args.push(password);
                self.simple(&args).await?;
            }
            if self.target.db != 0 {
                let db = self.target.db.to_string();
                self.simple(&["SELECT".to_owned(), db]).await?;
            }
            Ok::<(), RedisError>(())
        };
        let done = within(connect_timeout, handshake).await;
        if done.is_err() {
            self.io = None;
        }
        done
    }

    /// Sends a command whose reply is `+OK` (or an error). Written from a buffer of its own:
    /// `out` may hold the command this connection is being made for.
    async fn simple(&mut self, args: &[String]) -> Result<(), RedisError> {
        let mut command = Vec::new();
        encode(&mut command, args.iter().map(String::as_bytes));
        let io = self.io.as_mut().expect("connected");
        io.write_all(&command).await?;
        loop {
            match parse_line_reply(&self.buf) {
                Parsed::Done((result, used)) => {
                    self.buf.drain(..used);
                    return result;
                }
                Parsed::Incomplete => read_more(io, &mut self.buf).await?,
                Parsed::Bad(detail) => return Err(protocol_error(detail)),
            }
        }
    }

    /// Writes `self.out` and reads one reply with `parse` (called again, on a buffer that only
    /// grew, until it is done), within `limit`. The stream is taken
    /// out for the exchange: if it fails or the future is dropped halfway (shutdown), it is not
    /// put back and the next exchange starts on a fresh connection.
    pub(super) async fn exchange<T>(
        &mut self,
        limit: Duration,
        mut parse: impl FnMut(&[u8]) -> Parsed<(T, usize)>,
    ) -> Result<T, RedisError> {
        self.ensure_connected().await?;
        let mut io = self.io.take().expect("connected");
        let exchange = async {
            io.write_all(&self.out).await?;
            loop {
                match parse(&self.buf) {
                    Parsed::Done((reply, used)) => {
                        self.buf.drain(..used);
                        return Ok(reply);
                    }
                    Parsed::Incomplete => read_more(&mut io, &mut self.buf).await?,
                    Parsed::Bad(detail) => return Err(protocol_error(detail)),
                }
            }
        };
        let reply = within(limit, exchange).await?;
        self.io = Some(io);
        Ok(reply)
    }
}

async fn within<T, E: Into<RedisError>>(
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply from Redis within {limit:?}"),
        )
        .into()),
    }
}

/// Whether the connection is still open and quiet: nothing to read, not even the end of the
/// stream. A reply nobody asked for, an end of stream or an error all mean it cannot be used.
async fn is_open(io: &mut Box<dyn Stream>) -> bool {
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut byte);
        Poll::Ready(std::pin::Pin::new(&mut **io).poll_read(cx, &mut buf).is_pending())
    })
    .await
}

async fn read_more(io: &mut Box<dyn Stream>, buf: &mut Vec<u8>) -> Result<(), RedisError> {
    buf.reserve(64 * 1024);
    let n = io.read_buf(buf).await?;
    if n == 0 {
        return Err(
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "Redis closed the connection").into(),
        );
    }
    Ok(())
}

fn protocol_error(detail: String) -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected reply from Redis: {detail}"),
    )
    .into()
}
