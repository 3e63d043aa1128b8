//! Printing connection strings without their secrets.
//!
//! [`redact_url`] understands the two forms Quern is given: URLs (`redis://`, `rediss://`,
//! `redis+unix://`, `postgres://`, `postgresql://`, …) and PostgreSQL `key=value` connection
//! strings. It only prints what it has parsed with certainty: a string whose password it cannot
//! locate for sure loses every part that might hold one, down to the whole string. A password
//! that ends up in a log because a URL was malformed is still a leaked password.

/// What a string becomes when nothing of it can be shown safely.
const HIDDEN: &str = "<unparseable connection string, hidden>";

/// What replaces a password, or a part of a URL that may hold one.
const MASK: &str = "***";

/// `url` with any password replaced by `***`, for logs and error messages.
///
/// ```
/// use quern_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/site"), "postgres://app:***@db:5432/site");
/// assert_eq!(redact_url("redis://:pw@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// assert_eq!(redact_url("host=db password = 'pa ss' dbname=site"), "host=db password = *** dbname=site");
/// ```
///
/// A `password=` query parameter (and `pass=`, `sslpassword=`, …) is redacted as well.
///
/// Whatever cannot be parsed with certainty is hidden rather than guessed at:
///
/// - A URL must be `scheme://[userinfo@]host[:port][,host[:port]…][/path][?query][#fragment]`.
///   If a `/`, `#` or a second `@` comes before the last `@` (a password holding one of them,
///   unescaped), the whole userinfo is hidden; if a `?` does (a password holding one, or an `@`
///   in a query value), or if the host and port are not a plain host name or `[IPv6]` address
///   and a number, everything after `://` is hidden. In the query, a
///   parameter that is not a known PostgreSQL or Redis one, or that has no `=`, is hidden
///   whole: it may be the tail of a password that held a `&`.
/// - A `key=value` string is read with tokio-postgres's grammar (whitespace around `=`, values
///   in single quotes, backslash escapes). If it does not parse, or names a keyword PostgreSQL
///   does not know (perhaps part of a password that held a space), it is hidden whole.
/// - Anything else (`redis//:pw@host`, `redis:/:pw@host`) is hidden whole.
///
/// ```
/// use quern_core::redact_url;
/// assert_eq!(redact_url("redis://:pa#ss@127.0.0.1:6379"), "redis://***@127.0.0.1:6379");
/// assert_eq!(redact_url("host=db password=pa ss"), "<unparseable connection string, hidden>");
/// assert_eq!(redact_url("redis:/:pw@127.0.0.1"), "<unparseable connection string, hidden>");
/// ```
pub fn redact_url(url: &str) -> String {
    match split_scheme(url) {
        Some((scheme, rest)) => redact_url_form(scheme, rest),
        None => redact_key_value(url).unwrap_or_else(|| HIDDEN.to_owned()),
    }
}

/// `(scheme, rest)` when `s` starts with an RFC 3986 scheme and `://`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let end = s.find("://")?;
    let scheme = &s[..end];
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then(|| (scheme, &s[end + 3..]))
}

/// The URL form: everything after `scheme://` is `rest`.
fn redact_url_form(scheme: &str, rest: &str) -> String {
    let hidden = || format!("{scheme}://{MASK}");
    // The last `@` ends the userinfo (as the WHATWG parser that redis-rs uses decides, while
    // tokio-postgres takes the first): nothing after it can be part of a password in the
    // userinfo, whatever that password holds.
    let (userinfo, after) = match rest.rfind('@') {
        // Unless a `?` comes before it: then the `@` may be inside a query value
        // (`?password=pa@ss`), and what follows it the end of a password.
        Some(at) if rest[..at].contains('?') => return hidden(),
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (hosts, tail) = after.split_at(host_end);
    if !is_host_list(hosts) {
        return hidden();
    }

    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        out.push_str(&redact_userinfo(userinfo));
        out.push('@');
    }
    out.push_str(hosts);

    // The path ends at the first `?` or `#`. A query runs to the end of the string, `#` and
    // all: tokio-postgres knows no fragments, so for it `?password=a#b` is the password `a#b`.
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, tail) = tail.split_at(path_end);
    out.push_str(path);
    if let Some(query) = tail.strip_prefix('?') {
        out.push('?');
        out.push_str(&redact_query(query));
    } else if let Some(fragment) = tail.strip_prefix('#') {
        // redis-rs's only fragment; anything else is hidden, being nothing we understand.
        out.push('#');
        out.push_str(if fragment == "insecure" { fragment } else { MASK });
    }
    out
}

/// `user:***`, `user`, or `***` when the userinfo is not cleanly `user[:password]`.
fn redact_userinfo(userinfo: &str) -> String {
    let clean = userinfo.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '_'
                    | '~'
                    | '%'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | ':'
            )
    });
    if !clean {
        return MASK.to_owned();
    }
    // Both redis-rs (WHATWG) and tokio-postgres take the first `:` as the end of the user.
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => userinfo.to_owned(),
    }
}

/// Whether `hosts` is a comma-separated list of `host[:port]` (either may be empty), each host a
/// plain name or address (letters, digits, `-._~%`) or a bracketed IPv6 address, each port digits.
fn is_host_list(hosts: &str) -> bool {
    hosts.split(',').all(|item| {
        let (host, port) = match item.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((addr, after)) => {
                    let addr_ok = addr
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '%' | '-' | '_'));
                    if !addr_ok {
                        return false;
                    }
                    match after {
                        "" => ("", None),
                        _ => match after.strip_prefix(':') {
                            Some(port) => ("", Some(port)),
                            None => return false,
                        },
                    }
                }
                None => return false,
            },
            None => match item.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (item, None),
            },
        };
        let host_ok = host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%'));
        host_ok && port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A URL query with the values of secret parameters masked and anything unknown hidden.
fn redact_query(query: &str) -> String {
    let parts: Vec<String> = query
        .split('&')
        .map(|param| {
            if param.is_empty() {
                return String::new();
            }
            let Some((raw_key, _)) = param.split_once('=') else {
                return MASK.to_owned();
            };
            let key = percent_decode(raw_key);
            if is_secret_key(&key) {
                format!("{raw_key}={MASK}")
            } else if is_known_key(&key) {
                param.to_owned()
            } else {
                MASK.to_owned()
            }
        })
        .collect();
    parts.join("&")
}

/// `s` with `%XX` sequences decoded (invalid ones kept), lossily as UTF-8.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the value of parameter `key` must never be printed. Loose on purpose (any case,
/// anything that sounds like a secret): masking a harmless value costs nothing.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

/// The parameters a PostgreSQL (libpq and tokio-postgres) or Redis (redis-rs) connection string
/// may carry. Any other key could be part of a password that held a space or a `&`.
fn is_known_key(key: &str) -> bool {
    const KNOWN: &[&str] = &[
        // libpq and tokio-postgres.
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "keepalives_retries",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "sslnegotiation",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
        // redis-rs.
        "db",
        "pass",
        "protocol",
    ];
    KNOWN.contains(&key)
}

/// A `key=value` connection string with secret values masked, or `None` when it does not parse
/// exactly as tokio-postgres's `Config::from_str` reads it (or names an unknown keyword).
fn redact_key_value(s: &str) -> Option<String> {
    let mut parser = KeyValueParser { s, pos: 0 };
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    loop {
        parser.skip_ws();
        let key = parser.keyword();
        if key.is_empty() {
            // tokio-postgres stops here, ignoring whatever follows (a value after a lone `=`):
            // a string we cannot read to its end is not one we can vouch for.
            return parser.at_end().then(|| {
                out.push_str(&s[copied..]);
                out
            });
        }
        parser.skip_ws();
        parser.eat('=')?;
        parser.skip_ws();
        let value_start = parser.pos;
        parser.value()?;
        if is_secret_key(key) {
            out.push_str(&s[copied..value_start]);
            out.push_str(MASK);
            copied = parser.pos;
        } else if !is_known_key(key) {
            return None;
        }
    }
}

/// tokio-postgres's `key=value` grammar (`tokio_postgres::config::Parser`), tracking positions
/// instead of building values.
struct KeyValueParser<'a> {
    s: &'a str,
    /// Byte offset of the next character.
    pos: usize,
}

impl<'a> KeyValueParser<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos == self.s.len()
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.next();
        }
        &self.s[start..self.pos]
    }

    fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn keyword(&mut self) -> &'a str {
        self.take_while(|c| !c.is_whitespace() && c != '=')
    }

    fn eat(&mut self, target: char) -> Option<()> {
        (self.next()? == target).then_some(())
    }

    /// A quoted value (`'…'`, backslash escapes) or a simple one (up to whitespace, backslash
    /// escapes, not empty).
    fn value(&mut self) -> Option<()> {
        if self.peek() == Some('\'') {
            self.next();
            loop {
                match self.next()? {
                    '\'' => return Some(()),
                    '\\' => {
                        self.next();
                    }
                    _ => {}
                }
            }
        }
        let mut len = 0;
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                break;
            }
            self.next();
            if c == '\\' {
                // An escape at the very end adds nothing, as in tokio-postgres.
                len += usize::from(self.next().is_some());
            } else {
                len += 1;
            }
        }
        (len > 0).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::{HIDDEN, redact_url};

    #[test]
    fn redacts_userinfo_and_query_passwords() {
        assert_eq!(
            redact_url("postgres://u:p@h/db?password=x&sslmode=disable"),
            "postgres://u:***@h/db?password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("rediss://u:p:q@h"), "rediss://u:***@h");
        assert_eq!(
            redact_url("host=h password=x dbname=d"),
            "host=h password=*** dbname=d"
        );
    }

    /// The secret of every hostile case below; its halves must not appear either.
    const PW: &str = "s3cr3tPW";

    /// `(input, what must survive)`: each input carries [`PW`] (or a split or encoded form of
    /// it) somewhere a password may be, and the output must hold none of it.
    const HOSTILE: &[(&str, &[&str])] = &[
        // Well-formed URLs, every scheme.
        (
            "redis://:s3cr3tPW@127.0.0.1:6379/0",
            &["redis://", "127.0.0.1:6379/0"],
        ),
        ("redis://app:s3cr3tPW@127.0.0.1:6379", &["app:***@127.0.0.1:6379"]),
        (
            "rediss://:s3cr3tPW@cache.example:6380/#insecure",
            &["cache.example:6380", "#insecure"],
        ),
        ("valkey://u:s3cr3tPW@h", &["u:***@h"]),
        ("postgres://app:s3cr3tPW@db:5432/site", &["app:***@db:5432/site"]),
        (
            "postgresql://app:s3cr3tPW@db1:5432,db2:5433/site",
            &["db1:5432,db2:5433/site"],
        ),
        ("postgres://app:s3cr3tPW@[::1]:5432/site", &["[::1]:5432/site"]),
        (
            "redis+unix:///tmp/redis.sock?db=1&pass=s3cr3tPW",
            &["/tmp/redis.sock?db=1&pass=***"],
        ),
        ("unix:///tmp/redis.sock?user=u&pass=s3cr3tPW", &["user=u"]),
        ("redis://:s3cr3tPW@", &["redis://"]),
        // A password holding what ends the authority, unescaped.
        ("redis://:s3cr#3tPW@127.0.0.1:6379", &["***@127.0.0.1:6379"]),
        ("redis://:s3cr/3tPW@127.0.0.1:6379", &["***@127.0.0.1:6379"]),
        ("redis://:s3cr?3tPW@127.0.0.1:6379", &["redis://"]),
        ("postgres://u@h/db?password=s3cr@3tPW", &["postgres://"]),
        ("postgres://u@h/db?password=@s3cr3tPW", &["postgres://"]),
        ("redis://h/0?x=1#s3cr@3tPW", &["redis://"]),
        ("redis://:s3cr@3tPW@127.0.0.1:6379", &["***@127.0.0.1:6379"]),
        ("postgres://app:s3cr@3tPW@db/site", &["***@db/site"]),
        ("redis://:s3cr3tPW#x@127.0.0.1:6379", &["127.0.0.1:6379"]),
        // User names holding `@` or `:`, encoded or not.
        ("redis://u@ser:s3cr3tPW@host", &["***@host"]),
        ("redis://us:er:s3cr3tPW@host", &["us:***@host"]),
        ("redis://u%40ser:s3cr3tPW@host", &["u%40ser:***@host"]),
        ("redis://u%3Aser:s3cr3tPW@host", &["u%3Aser:***@host"]),
        // Percent-encoded passwords.
        ("redis://:s3cr%403tPW@host", &["host"]),
        ("redis://:s3cr%3A3tPW@host", &["host"]),
        ("postgres://u:s3cr%233tPW@h/db", &["u:***@h/db"]),
        // No `@`: the password sits where the host or port should.
        ("redis://:s3cr3tPW", &["redis://"]),
        ("redis://host:s3cr3tPW", &["redis://"]),
        ("redis://:s3cr3tPW/0", &["redis://"]),
        ("redis://s3cr 3tPW@host", &["host"]),
        // Passwords in the query, including ones holding `&`, `#` or a space.
        ("postgres://u@h/db?password=s3cr3tPW", &["u@h/db?password=***"]),
        (
            "postgres://u@h/db?sslmode=require&password=s3cr3tPW",
            &["sslmode=require"],
        ),
        ("postgres://u@h/db?PASSWORD=s3cr3tPW", &["u@h/db"]),
        ("postgres://u@h/db?pass%77ord=s3cr3tPW", &["u@h/db"]),
        ("postgres://u@h/db?password=s3cr&3tPW", &["password=***"]),
        ("postgres://u@h/db?password=s3cr&3tPW=x", &["password=***"]),
        ("postgres://u@h/db?password=s3cr#3tPW", &["password=***"]),
        ("postgres://u@h/db?password=s3cr 3tPW", &["password=***"]),
        ("postgres://u@h/db?sslpassword=s3cr3tPW", &["u@h/db"]),
        ("redis://h/0#s3cr3tPW", &["redis://h/0#***"]),
        // Not URLs at all.
        ("redis//:s3cr3tPW@host", &[]),
        ("redis:/:s3cr3tPW@host", &[]),
        ("redis:s3cr3tPW@host", &[]),
        (":s3cr3tPW@host", &[]),
        ("s3cr3tPW", &[]),
        ("1redis://:s3cr3tPW@host", &[]),
        (" redis://:s3cr3tPW@host", &[]),
        // key=value, every spacing and quoting tokio-postgres accepts.
        ("host=h password=s3cr3tPW dbname=d", &["host=h", "dbname=d"]),
        ("host=h password = s3cr3tPW dbname=d", &["host=h", "dbname=d"]),
        ("host=h password= 's3cr 3tPW' dbname=d", &["host=h", "dbname=d"]),
        ("host=h password ='s3cr 3tPW'dbname=d", &["host=h", "dbname=d"]),
        (r"host=h password='s3cr\'3tPW' dbname=d", &["host=h", "dbname=d"]),
        (r"host=h password='s3cr\\3tPW' dbname=d", &["host=h", "dbname=d"]),
        (r"host=h password=s3cr\ 3tPW dbname=d", &["host=h", "dbname=d"]),
        (r"host=h password=s3cr\'3tPW", &["host=h"]),
        ("host=h\tpassword=s3cr3tPW\ndbname=d", &["host=h", "dbname=d"]),
        ("\n password\t=\t's3cr3tPW'\n", &["password"]),
        ("password=s3cr3tPW", &[]),
        ("sslpassword=s3cr3tPW host=h", &["host=h"]),
        // key=value that tokio-postgres rejects, or that hides the secret's end: all hidden.
        ("host=h PASSWORD=s3cr3tPW", &[]),
        ("host=h Password = s3cr3tPW", &[]),
        ("host=h password=s3cr 3tPW", &[]),
        ("host=h password=s3cr 3tPW=x", &[]),
        ("host=h password=s3cr 3tPW dbname=d", &[]),
        ("host=h password='s3cr 3tPW", &[]),
        ("host=h password='s3cr3tPW\\'", &[]),
        ("host=h =s3cr3tPW", &[]),
        ("host=h s3cr3tPW", &[]),
        ("password:s3cr3tPW", &[]),
    ];

    fn assert_hidden(input: &str, out: &str, secret: &str) {
        let fragments = [secret, &secret[..4], &secret[4..], &secret[1..5], &secret[3..7]];
        for f in fragments {
            assert!(!out.contains(f), "{input:?} became {out:?}, which holds {f:?}");
        }
    }

    #[test]
    fn no_hostile_input_shows_its_password() {
        for &(input, keep) in HOSTILE {
            assert!(
                input.contains(PW) || (input.contains("s3cr") && input.contains("3tPW")),
                "the case {input:?} carries the secret"
            );
            let out = redact_url(input);
            assert_hidden(input, &out, PW);
            for k in keep {
                assert!(out.contains(k), "{input:?} became {out:?}, without {k:?}");
            }
        }
    }

    #[test]
    fn what_cannot_be_read_is_hidden_whole() {
        for input in [
            "redis//:s3cr3tPW@host",
            "redis:/:s3cr3tPW@host",
            "host=h password='s3cr3tPW",
            "host=h password=",
            "host=h password",
            "host=h password=\\",
            "garbage",
            "=",
            "'",
        ] {
            assert_eq!(redact_url(input), HIDDEN, "{input:?}");
        }
        assert_eq!(redact_url("redis://host:s3cr3tPW"), "redis://***");
        assert_eq!(redact_url("redis://u:@h"), "redis://u:***@h");
        assert_eq!(redact_url("redis://:s3cr#3tPW@h:6379/0"), "redis://***@h:6379/0");
    }

    #[test]
    fn benign_strings_are_kept() {
        for s in [
            "",
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1:6379/0?protocol=resp3",
            "rediss://cache.example/#insecure",
            "redis+unix:///tmp/redis.sock?db=2",
            "postgres:///site?host=/var/run/postgresql",
            "postgres://root@127.0.0.1:5432/test",
            "postgres://%2Fvar%2Frun%2Fpostgresql/site",
            "postgresql://[2001:db8::1]:5432,db2/site?sslmode=require&application_name=quern",
            "host=h port=5432 user=root dbname=test",
            "host=/var/run/postgresql dbname=site options='-c search_path=x'",
            "  host = h  ",
        ] {
            assert_eq!(redact_url(s), s);
        }
        assert_eq!(
            redact_url("postgres://u:pw@h/db?application_name=me&x=1"),
            "postgres://u:***@h/db?application_name=me&***"
        );
        assert_eq!(
            redact_url("host=h password = 'a b' dbname=d"),
            "host=h password = *** dbname=d"
        );
    }

    /// Every string tokio-postgres would read a password from must lose it; this checks a
    /// generated set of key=value strings against the parser itself (the grammar is mirrored,
    /// so a value it reads must be a value we mask).
    #[test]
    fn generated_key_value_strings_never_show_their_password() {
        let seps = [" ", "  ", "\t", "\n", " \t "];
        let values = [
            "s3cr3tPW".to_owned(),
            "'s3cr 3tPW'".to_owned(),
            r"'s3cr\'3tPW'".to_owned(),
            r"'s3cr\\3tPW'".to_owned(),
            r"s3cr\ 3tPW".to_owned(),
            r"s3cr\\3tPW".to_owned(),
            "'s3cr=3tPW'".to_owned(),
        ];
        for before in ["", " ", "\t"] {
            for after in ["", " ", "\t\n"] {
                for sep in seps {
                    for value in &values {
                        let s = format!("host=h{sep}password{before}={after}{value}{sep}dbname=d");
                        let out = redact_url(&s);
                        assert_hidden(&s, &out, "s3cr3tPW");
                        assert!(out.contains("dbname=d"), "{s:?} became {out:?}");
                    }
                }
            }
        }
    }
}
