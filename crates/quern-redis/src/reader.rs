//! [`Reader`]: the connection a worker claims jobs on.
//!
//! Claiming is the hottest command a worker sends. Over plain TCP or a Unix socket the reader
//! writes `XREADGROUP` itself and parses the reply straight into [`Delivery`] values, without
//! first building the driver's generic reply tree: that tree (a vector and a buffer for every
//! id, field name and value) was the largest part of a worker's CPU per job. Over TLS it uses a
//! redis-rs connection and the generic reply.
//!
//! The protocol spoken here is RESP2, the default of every Redis since 2.0 and of Valkey: a
//! command is an array of bulk strings; the reply to `XREADGROUP` is a null (nothing came within
//! the block time), an error line, or `[[stream, [[id, [field, value, ...]], ...]]]`.

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ConnectionAddr, RedisError};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::StorageError;
use crate::storage::{Delivery, EntryBuilder};

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

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Raw {
    target: Target,
    /// `None` until connected, and again after any failure or an interrupted read (the stream
    /// may hold part of a reply): the next read reconnects.
    io: Option<Box<dyn Stream>>,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
    /// The command being written.
    out: Vec<u8>,
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
                crate::storage::parse_read(reply)
            }
        }
    }
}

const READING: &str = "reading jobs";

impl Raw {
    async fn ensure_connected(&mut self) -> Result<(), RedisError> {
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

    /// Writes `self.out` and reads one reply with `parse`, within `limit`. The stream is taken
    /// out for the exchange: if it fails or the future is dropped halfway (shutdown), it is not
    /// put back and the next exchange starts on a fresh connection.
    async fn exchange<T>(
        &mut self,
        limit: Duration,
        parse: impl Fn(&[u8]) -> Parsed<(T, usize)>,
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

/// Appends jobs to streams in bulk over a connection of its own: the commands are written
/// straight into one buffer and the replies (one entry id each) checked without being kept.
/// [`Storage::push`](crate::Storage::push) uses it for batches when it is free, and the shared
/// connection otherwise.
pub(crate) struct Pusher {
    raw: Raw,
}

impl Pusher {
    pub(crate) fn new(target: Target) -> Pusher {
        Pusher {
            raw: Raw {
                target,
                io: None,
                buf: Vec::with_capacity(16 * 1024),
                out: Vec::with_capacity(256 * 1024),
            },
        }
    }

    /// `SADD <queues> <queue>` when `register` is given, then `XADD <stream> * e <envelope>` for
    /// each envelope, in one round trip. Fails with the first error reply, after reading all.
    pub(crate) async fn push(
        &mut self,
        stream: &str,
        envelopes: &[String],
        register: Option<(&str, &str)>,
    ) -> Result<(), RedisError> {
        let out = &mut self.raw.out;
        out.clear();
        let mut replies = envelopes.len();
        if let Some((set, queue)) = register {
            encode(out, ["SADD", set, queue].iter().map(|s| s.as_bytes()));
            replies += 1;
        }
        for env in envelopes {
            encode(
                out,
                [b"XADD".as_slice(), stream.as_bytes(), b"*", b"e", env.as_bytes()].into_iter(),
            );
        }
        let limit = self.raw.target.response_timeout;
        match self
            .raw
            .exchange(limit, |buf| parse_replies(buf, replies))
            .await?
        {
            None => Ok(()),
            Some(line) => Err(server_error(&line)),
        }
    }
}

/// `n` replies of any simple shape (entry ids, counts); the first error line, if any.
fn parse_replies(buf: &[u8], n: usize) -> Parsed<(Option<String>, usize)> {
    let mut c = Cursor { b: buf, pos: 0 };
    finish((|| {
        let mut error = None;
        for _ in 0..n {
            if c.b.get(c.pos) == Some(&b'-') {
                c.pos += 1;
                let line = c.line()?;
                error.get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
            } else {
                c.bulk()?;
            }
        }
        Ok((error, c.pos))
    })())
}

/// An error line (`-NOGROUP No such key …`) as the driver would report it, code included.
fn server_error(line: &str) -> RedisError {
    let (code, detail) = line.split_once(' ').unwrap_or((line, ""));
    redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
}

/// Appends a command as a RESP array of bulk strings.
fn encode<'a>(out: &mut Vec<u8>, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    use std::io::Write;
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

enum Parsed<T> {
    /// The value and how many bytes it took.
    Done(T),
    /// The buffer ends inside the reply.
    Incomplete,
    /// Not a reply Quern can understand.
    Bad(String),
}

#[derive(Debug)]
enum ReadReply {
    Deliveries(Vec<Delivery>),
    ServerError(String),
}

/// A cursor over one reply; `None` from a step means the buffer ends inside it.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Step {
    Incomplete,
    Bad(String),
}

impl<'a> Cursor<'a> {
    /// The rest of the line after the type byte, up to `\r\n`.
    fn line(&mut self) -> Result<&'a [u8], Step> {
        let rest = &self.b[self.pos..];
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(Step::Incomplete)?;
        self.pos += end + 2;
        Ok(&rest[..end])
    }

    fn int(line: &[u8]) -> Result<i64, Step> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Step::Bad(format!("not a length: {:?}", String::from_utf8_lossy(line))))
    }

    fn kind(&mut self) -> Result<u8, Step> {
        let k = *self.b.get(self.pos).ok_or(Step::Incomplete)?;
        self.pos += 1;
        Ok(k)
    }

    /// `*<n>`: `Some(n)`, or `None` for a null array.
    fn array(&mut self) -> Result<Option<usize>, Step> {
        match self.kind()? {
            b'*' => {
                let n = Self::int(self.line()?)?;
                Ok(usize::try_from(n).ok())
            }
            b'$' if self.line()? == b"-1" => Ok(None),
            other => Err(Step::Bad(format!(
                "expected an array, found {:?}",
                char::from(other)
            ))),
        }
    }

    /// `$<n>` and its bytes: `Some(bytes)`, or `None` for a null bulk string.
    fn bulk(&mut self) -> Result<Option<&'a [u8]>, Step> {
        match self.kind()? {
            b'$' => {
                let n = Self::int(self.line()?)?;
                let Ok(n) = usize::try_from(n) else {
                    return Ok(None);
                };
                let rest = &self.b[self.pos..];
                if rest.len() < n + 2 {
                    return Err(Step::Incomplete);
                }
                if &rest[n..n + 2] != b"\r\n" {
                    return Err(Step::Bad("a bulk string not ended by CRLF".into()));
                }
                self.pos += n + 2;
                Ok(Some(&rest[..n]))
            }
            b'+' => Ok(Some(self.line()?)),
            b':' => Ok(Some(self.line()?)),
            other => Err(Step::Bad(format!(
                "expected a string, found {:?}",
                char::from(other)
            ))),
        }
    }
}

fn finish<T>(r: Result<T, Step>) -> Parsed<T> {
    match r {
        Ok(v) => Parsed::Done(v),
        Err(Step::Incomplete) => Parsed::Incomplete,
        Err(Step::Bad(detail)) => Parsed::Bad(detail),
    }
}

/// The reply to `AUTH` or `SELECT`.
fn parse_line_reply(buf: &[u8]) -> Parsed<(Result<(), RedisError>, usize)> {
    let mut c = Cursor { b: buf, pos: 0 };
    finish((|| {
        let kind = c.kind()?;
        let line = c.line()?;
        let result = match kind {
            b'+' => Ok(()),
            b'-' => Err(server_error(&String::from_utf8_lossy(line))),
            other => return Err(Step::Bad(format!("expected +OK, found {:?}", char::from(other)))),
        };
        Ok((result, c.pos))
    })())
}

/// The reply to `XREADGROUP`, parsed into deliveries as it is read.
fn parse_read_reply(buf: &[u8]) -> Parsed<(ReadReply, usize)> {
    let mut c = Cursor { b: buf, pos: 0 };
    finish((|| {
        if buf.first() == Some(&b'-') {
            c.pos = 1;
            let line = c.line()?;
            return Ok((
                ReadReply::ServerError(String::from_utf8_lossy(line).into_owned()),
                c.pos,
            ));
        }
        let mut out = Vec::new();
        let Some(streams) = c.array()? else {
            return Ok((ReadReply::Deliveries(out), c.pos));
        };
        for _ in 0..streams {
            if c.array()? != Some(2) {
                return Err(Step::Bad("a stream is not a [name, entries] pair".into()));
            }
            c.bulk()?;
            let Some(entries) = c.array()? else { continue };
            out.reserve(entries);
            for _ in 0..entries {
                if c.array()? != Some(2) {
                    return Err(Step::Bad("an entry is not an [id, fields] pair".into()));
                }
                let id = c
                    .bulk()?
                    .ok_or_else(|| Step::Bad("an entry without an id".into()))?;
                let id = std::str::from_utf8(id)
                    .map_err(|_| Step::Bad("an entry id that is not text".into()))?
                    .to_owned();
                let mut entry = EntryBuilder::default();
                // A null field list is an entry deleted while leased: no `e` field.
                if let Some(n) = c.array()? {
                    for _ in 0..n / 2 {
                        let k = c.bulk()?.unwrap_or_default();
                        let v = c.bulk()?;
                        entry.field(k, v);
                    }
                    if n % 2 == 1 {
                        c.bulk()?;
                    }
                }
                out.push(entry.finish(id));
            }
        }
        Ok((ReadReply::Deliveries(out), c.pos))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(entries: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
        let mut b = format!("*1\r\n*2\r\n$6\r\nq:strm\r\n*{}\r\n", entries.len()).into_bytes();
        for (id, fields) in entries {
            b.extend(format!("*2\r\n${}\r\n{id}\r\n*{}\r\n", id.len(), fields.len() * 2).bytes());
            for (k, v) in *fields {
                b.extend(format!("${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).bytes());
            }
        }
        b
    }

    fn deliveries(buf: &[u8]) -> Vec<Delivery> {
        match parse_read_reply(buf) {
            Parsed::Done((ReadReply::Deliveries(d), used)) => {
                assert_eq!(used, buf.len());
                d
            }
            Parsed::Done((other, _)) => panic!("{other:?}"),
            Parsed::Incomplete => panic!("incomplete"),
            Parsed::Bad(d) => panic!("bad: {d}"),
        }
    }

    #[test]
    fn a_reply_becomes_deliveries_as_the_generic_parser_makes_them() {
        let env = r#"{"id":"01J","job":"a","payload":{"n":1}}"#;
        let buf = reply(&[
            ("1-0", &[("e", env)]),
            ("1-1", &[("e", env), ("r", "2")]),
            ("2-0", &[("name", "x"), ("data", "{\"a\":1}")]),
            ("3-0", &[]),
        ]);
        let d = deliveries(&buf);
        assert_eq!(d.len(), 4);
        assert_eq!(
            (d[0].entry_id.as_str(), d[0].envelope.as_slice()),
            ("1-0", env.as_bytes())
        );
        assert_eq!((d[0].lease_expiries, d[0].foreign_fields.as_deref()), (0, None));
        assert_eq!(d[1].lease_expiries, 2);
        assert!(d[2].envelope.is_empty());
        let foreign: serde_json::Value =
            serde_json::from_str(d[2].foreign_fields.as_deref().unwrap()).unwrap();
        assert_eq!(foreign, serde_json::json!({"name": "x", "data": "{\"a\":1}"}));
        assert!(d[3].envelope.is_empty());

        // The same bytes through redis-rs's parser and Quern's generic path agree.
        let value = redis::parse_redis_value(&buf).unwrap();
        let generic = crate::storage::parse_read(value).unwrap();
        assert_eq!(format!("{generic:?}"), format!("{d:?}"));
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let buf = reply(&[("1-0", &[("e", "{}")]), ("1-1", &[("e", "{\"x\":\"\\r\\n\"}")])]);
        for cut in 0..buf.len() {
            assert!(
                matches!(parse_read_reply(&buf[..cut]), Parsed::Incomplete),
                "cut at {cut}"
            );
        }
        assert_eq!(deliveries(&buf).len(), 2);
    }

    #[test]
    fn null_replies_errors_and_nonsense() {
        assert!(deliveries(b"*-1\r\n").is_empty());
        assert!(deliveries(b"$-1\r\n").is_empty());
        match parse_read_reply(b"-NOGROUP No such key 'q' or consumer group 'workers'\r\n") {
            Parsed::Done((ReadReply::ServerError(line), _)) => {
                let e = server_error(&line);
                assert_eq!(e.code(), Some("NOGROUP"));
            }
            _ => panic!("an error line"),
        }
        assert!(matches!(parse_read_reply(b":12\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse_read_reply(b"*1\r\n*3\r\n"), Parsed::Bad(_)));
        // A deleted entry still leased: a null field list.
        let d = deliveries(b"*1\r\n*2\r\n$1\r\nq\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n");
        assert_eq!((d[0].entry_id.as_str(), d[0].envelope.len()), ("1-0", 0));
        // Two replies in the buffer: only the first is taken.
        let mut two = b"*-1\r\n".to_vec();
        two.extend_from_slice(b"*-1\r\n");
        assert!(matches!(parse_read_reply(&two), Parsed::Done((_, 5))));
    }

    #[test]
    fn bulk_replies_are_counted_and_errors_kept() {
        let ok = b":1\r\n$15\r\n1700000000000-0\r\n$15\r\n1700000000000-1\r\n";
        for cut in 0..ok.len() {
            assert!(
                matches!(parse_replies(&ok[..cut], 3), Parsed::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(matches!(parse_replies(ok, 3), Parsed::Done((None, n)) if n == ok.len()));
        let mixed = b"$3\r\n1-0\r\n-OOM command not allowed\r\n-ERR second\r\n";
        match parse_replies(mixed, 3) {
            Parsed::Done((Some(line), n)) => {
                assert_eq!(n, mixed.len());
                assert_eq!(server_error(&line).code(), Some("OOM"));
            }
            _ => panic!("the first error is reported"),
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, ["AUTH", "pässword"].iter().map(|s| s.as_bytes()));
        assert_eq!(out, "*2\r\n$4\r\nAUTH\r\n$9\r\npässword\r\n".as_bytes());
        assert!(matches!(parse_line_reply(b"+OK\r\n"), Parsed::Done((Ok(()), 5))));
        match parse_line_reply(b"-WRONGPASS invalid username-password pair\r\n") {
            Parsed::Done((Err(e), _)) => assert_eq!(e.code(), Some("WRONGPASS")),
            _ => panic!("an error"),
        }
    }
}
