//! `redact_url` against tokio-postgres's own parser: for thousands of generated connection
//! strings whose password slot holds two secret tokens mixed with every character that ends a
//! URL part or a `key=value` value, neither the redacted string nor the error `IsolatedPg`
//! reports for it shows any part of either token, whether or not tokio-postgres can parse it.

use std::str::FromStr;

use quern_core::{ErrorChain, JobContext, JobId, redact_url};
use quern_diesel::{IsolatedPg, PgConfig};

/// The two halves of the secret; a password slot holds at least one of them.
const TOKENS: [&str; 2] = ["s3cQ", "r3tZ"];

/// What a password slot is built from: the tokens and every character with a meaning in a URL
/// or a `key=value` string (none forms a known keyword, so every occurrence of a token is in
/// the password slot or a part the parser cannot read with certainty).
const PIECES: &[&str] = &[
    "s3cQ", "r3tZ", "s3cQ", "r3tZ", "@", "#", "/", "?", ":", "&", "=", " ", "\t", "\n", "'", "\\", "%40",
    "%3A", "%", ",", "[", "]", "x",
];

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn slot(&mut self) -> String {
        let mut s = String::from(TOKENS[self.below(2)]);
        for _ in 0..self.below(5) {
            let piece = PIECES[self.below(PIECES.len())];
            if self.below(2) == 0 {
                s.push_str(piece);
            } else {
                s.insert_str(0, piece);
            }
        }
        s
    }
}

/// The connection strings one password slot gives: both URL schemes, userinfo and query, and
/// `key=value` with every spacing and with the value bare or quoted.
fn strings(slot: &str) -> Vec<String> {
    let quoted = slot.replace('\\', "\\\\").replace('\'', "\\'");
    vec![
        format!("postgres://app:{slot}@127.0.0.1:5432/site"),
        format!("postgresql://app:{slot}@db1,db2:5433/site?sslmode=disable"),
        format!("postgres://:{slot}@db"),
        format!("postgres://app@db/site?password={slot}"),
        format!("postgres://app@db/site?sslmode=disable&password={slot}&application_name=x"),
        format!("host=db password={slot} dbname=site"),
        format!("host=db password = {slot}"),
        format!("host=db\tpassword\t=\t'{slot}'\tdbname=site"),
        format!("host=db password='{quoted}' dbname=site"),
        format!("password= '{quoted}'"),
    ]
}

fn assert_no_token(input: &str, what: &str, text: &str) {
    for token in TOKENS {
        for part in [token, &token[..3], &token[1..]] {
            assert!(
                !text.contains(part),
                "{input:?}: the {what} holds {part:?}: {text}"
            );
        }
    }
}

#[test]
fn no_generated_connection_string_shows_its_password() {
    let ctx = JobContext::new(JobId::new(), "redaction", "test", 1);
    let pg = IsolatedPg::new(&PgConfig::new(), &ctx);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut total, mut with_password, mut rejected) = (0, 0, 0);
    for _ in 0..3000 {
        let slot = rng.slot();
        for s in strings(&slot) {
            total += 1;
            assert_no_token(&s, "redacted string", &redact_url(&s));
            match tokio_postgres::Config::from_str(&s) {
                Ok(config) => with_password += usize::from(config.get_password().is_some()),
                Err(_) => rejected += 1,
            }
            // Before any connection: an unparseable string is refused here, with its error.
            if let Err(e) = pg.use_database(s.as_str()) {
                assert_no_token(&s, "error", &ErrorChain::of(&e).to_string());
                assert_no_token(&s, "error's Debug", &format!("{e:?}"));
            }
        }
    }
    // The generator reaches both sides of the parser.
    assert!(
        with_password > total / 10,
        "{with_password} of {total} parse with a password"
    );
    assert!(rejected > total / 50, "{rejected} of {total} are rejected");
}

#[test]
fn what_tokio_postgres_reads_as_the_password_is_never_shown() {
    // Spacing and quoting tokio-postgres accepts; the password is whatever it reads.
    let cases = [
        "password=s3cQr3tZ",
        "password = s3cQr3tZ",
        "password= 's3cQ r3tZ'",
        r"password='s3cQ\'r3tZ'",
        r"password='s3cQ\\r3tZ'",
        r"password=s3cQ\ r3tZ",
        "host=db\tpassword=s3cQr3tZ\ndbname=site",
        "host=db password='s3cQ r3tZ'dbname=site",
        "postgres://app:s3cQ%40r3tZ@db/site",
        "postgres://app:s3cQ#r3tZ@db/site",
        "postgres://app:s3cQ/r3tZ@db/site",
        "postgres://app:s3cQ?r3tZ@db/site",
        "postgres://app@db/site?password=s3cQ%26r3tZ",
        "postgres://app@db/site?password=s3cQ#r3tZ",
    ];
    for s in cases {
        let config = tokio_postgres::Config::from_str(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let password = String::from_utf8(config.get_password().expect("a password").to_vec()).unwrap();
        assert!(
            password.contains("s3cQ") && password.contains("r3tZ"),
            "{s:?}: {password:?}"
        );
        assert_no_token(s, "redacted string", &redact_url(s));
    }
    // What tokio-postgres refuses, however close to the above.
    for s in ["password=s3cQ r3tZ", "password='s3cQr3tZ", "password=s3cQ r3tZ=x"] {
        assert!(tokio_postgres::Config::from_str(s).is_err(), "{s:?}");
        assert_eq!(redact_url(s), "<unparseable connection string, hidden>", "{s:?}");
    }
    // Keywords are case-sensitive, so tokio-postgres refuses this one; masked anyway.
    let s = "host=db PASSWORD=s3cQr3tZ";
    assert!(tokio_postgres::Config::from_str(s).is_err());
    assert_no_token(s, "redacted string", &redact_url(s));
}
