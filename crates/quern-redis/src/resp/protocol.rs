//! The RESP2 parser and encoder: pure functions over byte buffers, no I/O.
//!
//! The protocol spoken here is RESP2, the default of every Redis since 2.0 and of Valkey: a
//! command is an array of bulk strings; the reply to `XREADGROUP` is a null (nothing came within
//! the block time), an error line, or `[[stream, [[id, [field, value, ...]], ...]]]`.

use quern_core::Delivery;
use redis::RedisError;

use crate::delivery::EntryBuilder;

/// `n` replies of any simple shape (entry ids, counts); the first error line, if any.
pub(crate) fn parse_replies(buf: &[u8], n: usize) -> Parsed<(Option<String>, usize)> {
    let mut replies = Replies::new(n, n);
    match replies.parse(buf) {
        Parsed::Done(((), used)) => Parsed::Done((replies.error, used)),
        Parsed::Incomplete => Parsed::Incomplete,
        Parsed::Bad(detail) => Parsed::Bad(detail),
    }
}

/// Reads `want` simple replies as they arrive, keeping the strings of all but the first `skip`
/// (the entry ids `XADD` answers) and the first error line. Parsing resumes where the last call
/// stopped, so a large batch read in many pieces is parsed once, and each kept reply costs one
/// `String`.
pub(crate) struct Replies {
    want: usize,
    skip: usize,
    seen: usize,
    /// Where the first reply not yet parsed starts.
    pos: usize,
    /// The kept replies, in order (an error reply keeps nothing).
    pub(crate) kept: Vec<String>,
    /// The first error line.
    pub(crate) error: Option<String>,
    /// `Some(skip)` while the reply to an `EXEC` is still to come after the `want` replies
    /// (those to `MULTI` and to the queued commands): its elements are then read as replies,
    /// the first `skip` of them not kept.
    exec: Option<usize>,
}

impl Replies {
    pub(crate) fn new(want: usize, skip: usize) -> Self {
        Self {
            want,
            skip,
            seen: 0,
            pos: 0,
            kept: Vec::with_capacity(want.saturating_sub(skip)),
            error: None,
            exec: None,
        }
    }

    /// The replies to `MULTI`, `queued` commands and `EXEC`: the elements of the `EXEC` reply
    /// are kept but the first `skip`. An `EXEC` refused (`EXECABORT` after a command was
    /// refused while queued, `OOM` at `EXEC`) keeps nothing, and the first error line is the
    /// cause (the `OOM` of the first command refused).
    pub(crate) fn transaction(queued: usize, skip: usize) -> Self {
        let mut replies = Self::new(queued + 1, queued + 1);
        replies.kept = Vec::with_capacity(queued.saturating_sub(skip));
        replies.exec = Some(skip);
        replies
    }

    /// Parses the replies `buf` holds beyond those parsed before (`buf` only grows between
    /// calls): done, with the bytes used, once all `want` are in.
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Parsed<((), usize)> {
        let mut c = Cursor {
            b: buf,
            pos: self.pos,
        };
        loop {
            if self.seen == self.want {
                let Some(skip) = self.exec else { break };
                let step = match c.b.get(c.pos) {
                    None => Err(Step::Incomplete),
                    Some(b'-') => {
                        c.pos += 1;
                        c.line().map(|line| {
                            self.error
                                .get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
                            None
                        })
                    }
                    Some(_) => c.array(),
                };
                match step {
                    Ok(n) => {
                        match n {
                            Some(n) => {
                                self.want += n;
                                self.skip = self.seen + skip;
                            }
                            None => {
                                self.error
                                    .get_or_insert_with(|| "EXECABORT the transaction was aborted".into());
                            }
                        }
                        self.exec = None;
                        self.pos = c.pos;
                        continue;
                    }
                    Err(Step::Incomplete) => return Parsed::Incomplete,
                    Err(Step::Bad(detail)) => return Parsed::Bad(detail),
                }
            }
            let step = if c.b.get(c.pos) == Some(&b'-') {
                c.pos += 1;
                c.line().map(|line| {
                    self.error
                        .get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
                })
            } else {
                c.bulk().map(|reply| {
                    if self.seen >= self.skip {
                        self.kept.push(
                            reply
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                                .unwrap_or_default(),
                        );
                    }
                })
            };
            match step {
                Ok(()) => {
                    self.seen += 1;
                    self.pos = c.pos;
                }
                Err(Step::Incomplete) => return Parsed::Incomplete,
                Err(Step::Bad(detail)) => return Parsed::Bad(detail),
            }
        }
        Parsed::Done(((), self.pos))
    }
}

/// An error line (`-NOGROUP No such key …`) as the driver would report it, code included.
pub(crate) fn server_error(line: &str) -> RedisError {
    let (code, detail) = line.split_once(' ').unwrap_or((line, ""));
    redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
}

/// Appends a command as a RESP array of bulk strings.
pub(crate) fn encode<'a>(out: &mut Vec<u8>, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    use std::io::Write;
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

pub(crate) enum Parsed<T> {
    /// The value and how many bytes it took.
    Done(T),
    /// The buffer ends inside the reply.
    Incomplete,
    /// Not a reply Quern can understand.
    Bad(String),
}

#[derive(Debug)]
pub(crate) enum ReadReply {
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
pub(crate) fn parse_line_reply(buf: &[u8]) -> Parsed<(Result<(), RedisError>, usize)> {
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
pub(crate) fn parse_read_reply(buf: &[u8]) -> Parsed<(ReadReply, usize)> {
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
            // Room for what the bytes already here can hold (an entry takes at least 8 bytes),
            // never for what a count merely declares: the count comes from the wire.
            out.reserve(entries.min(buf.len().saturating_sub(c.pos) / 8));
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
                        let k = c.bulk()?;
                        let v = c.bulk()?;
                        // A null field name cannot be a field (the generic path skips it too).
                        if let Some(k) = k {
                            entry.field(k, v);
                        }
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

    /// Feeds `bytes` to a transaction's replies one byte more each call, as a slow socket would.
    fn transaction(bytes: &[u8], queued: usize, skip: usize) -> Replies {
        let mut r = Replies::transaction(queued, skip);
        for end in 1..=bytes.len() {
            match r.parse(&bytes[..end]) {
                Parsed::Done(((), used)) => {
                    assert_eq!(used, bytes.len());
                    return r;
                }
                Parsed::Incomplete => {}
                Parsed::Bad(d) => panic!("{d}"),
            }
        }
        panic!("incomplete");
    }

    #[test]
    fn a_transaction_keeps_the_exec_elements_or_the_first_refusal() {
        let ok = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:1\r\n$3\r\n1-0\r\n$3\r\n2-0\r\n";
        let r = transaction(ok, 3, 1);
        assert_eq!(
            (r.kept, r.error),
            (vec!["1-0".to_owned(), "2-0".to_owned()], None)
        );

        let oom = b"+OK\r\n-OOM command not allowed\r\n-OOM command not allowed\r\n\
                    -EXECABORT Transaction discarded\r\n";
        let r = transaction(oom, 2, 0);
        assert!(r.kept.is_empty());
        assert_eq!(r.error.as_deref(), Some("OOM command not allowed"));

        let at_exec = b"+OK\r\n+QUEUED\r\n-OOM command not allowed\r\n";
        let r = transaction(at_exec, 1, 0);
        assert_eq!(r.error.as_deref(), Some("OOM command not allowed"));
        assert!(r.kept.is_empty());
    }

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
            ("4-0", &[("e", ""), ("i", "emails/1-0")]),
        ]);
        let d = deliveries(&buf);
        assert_eq!(d.len(), 5);
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
        // An empty `e` is not a foreign entry: the worker names the empty field.
        assert!(d[4].envelope.is_empty() && d[4].foreign_fields.is_none());
        assert_eq!(d[4].job_id.as_deref(), Some("emails/1-0"));
        assert_eq!(d[0].job_id, None);

        // The same bytes through redis-rs's parser and Quern's generic path agree.
        let value = redis::parse_redis_value(&buf).unwrap();
        let generic = crate::delivery::parse_read(value).unwrap();
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
        // Fed piece by piece, as a socket delivers it: the entry ids after the first reply kept.
        let mut replies = Replies::new(3, 1);
        for cut in 1..ok.len() {
            assert!(
                matches!(replies.parse(&ok[..cut]), Parsed::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(matches!(replies.parse(ok), Parsed::Done(((), n)) if n == ok.len()));
        assert_eq!(replies.kept, ["1700000000000-0", "1700000000000-1"]);
        assert_eq!(replies.error, None);
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
