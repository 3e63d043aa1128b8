//! Inputs found by, or fed to, the fuzz targets in `fuzz/` (see `docs/fuzzing.md`), replayed
//! through the public fuzzing API (`quern_redis::fuzzing`). No Redis needed.
//!
//! The tests at the end replay bugs the fuzzer found (now fixed), from `fuzz/artifacts/`.

use quern_redis::Delivery;
use quern_redis::fuzzing::{parse_read_reply, parse_read_reply_generic, parse_replies};

fn deliveries(buf: &[u8]) -> Vec<Delivery> {
    match parse_read_reply(buf) {
        Some(Ok(d)) => d,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

const ENV: &str = r#"{"id":"01J","job":"send_email","payload":{"to":"a@example.com"}}"#;

fn one_entry() -> Vec<u8> {
    format!(
        "*1\r\n*2\r\n$5\r\nqueue\r\n*1\r\n*2\r\n$15\r\n1700000000000-0\r\n*4\r\n$1\r\ne\r\n${}\r\n{ENV}\r\n$1\r\nr\r\n$1\r\n2\r\n",
        ENV.len()
    )
    .into_bytes()
}

// fuzz/corpus/resp_read_reply/seed_*: the shapes of reply a worker receives.
#[test]
fn seed_replies_read_as_deliveries() {
    let d = deliveries(&one_entry());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].entry_id, "1700000000000-0");
    assert_eq!(d[0].envelope, ENV.as_bytes());
    assert_eq!((d[0].lease_expiries, d[0].foreign_fields.as_deref()), (2, None));

    // Null replies (nothing within the block time); a deleted entry still leased.
    assert!(deliveries(b"*-1\r\n").is_empty());
    assert!(deliveries(b"$-1\r\n").is_empty());
    let d = deliveries(b"*1\r\n*2\r\n$1\r\nq\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n");
    assert_eq!((d[0].entry_id.as_str(), d[0].envelope.len()), ("1-0", 0));

    // A foreign entry keeps its fields as JSON.
    let d = deliveries(b"*1\r\n*2\r\n$1\r\nq\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$4\r\nname\r\n$1\r\nx\r\n");
    assert_eq!(d[0].foreign_fields.as_deref(), Some(r#"{"name":"x"}"#));

    // Error lines are kept whole; RESP3's null is not RESP2 and is refused, not misread.
    match parse_read_reply(b"-NOGROUP No such key 'q' or consumer group 'workers'\r\n") {
        Some(Err(line)) => assert_eq!(line, "NOGROUP No such key 'q' or consumer group 'workers'"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse_read_reply(b"_\r\n"), Some(Err(_))));

    // A declared bulk length larger than the bytes present: wait for more, allocate nothing.
    assert!(parse_read_reply(b"*1\r\n*2\r\n$999999999\r\n").is_none());
}

#[test]
fn every_prefix_of_a_seed_reply_is_incomplete() {
    let buf = one_entry();
    for cut in 0..buf.len() {
        assert!(parse_read_reply(&buf[..cut]).is_none(), "cut at {cut}");
    }
}

// fuzz/corpus/resp_replies/seed_*: the first byte is the number of replies expected.
#[test]
fn seed_pipeline_replies() {
    let ok = b":1\r\n$15\r\n1700000000000-0\r\n$15\r\n1700000000000-1\r\n";
    assert_eq!(parse_replies(ok, 3), Some(Ok((None, ok.len()))));
    let mixed = b"$3\r\n1-0\r\n-OOM command not allowed\r\n-ERR second\r\n";
    assert_eq!(
        parse_replies(mixed, 3),
        Some(Ok((Some("OOM command not allowed".to_owned()), mixed.len())))
    );
    assert_eq!(parse_replies(b"$999999999\r\n", 1), None);
    assert_eq!(parse_replies(b"", 0), Some(Ok((None, 0))));
}

// Bug found by the fuzzer (fuzz/artifacts/resp_read_reply/oom-huge-entry-count and
// oom-entry-count-leading-zeros): the parser reserves room for as many entries as the reply
// declares, before they arrive (crates/quern-redis/src/resp/protocol.rs, `out.reserve(entries)`
// in `parse_read_reply`): 23 bytes declaring 10^9 entries ask for 80 GB and the process aborts.
// The parse runs in a child process (this test binary again) whose address space is capped at
// 4 GiB, so that the abort fails this test rather than the whole run, whatever the overcommit
// settings of the machine.
const HUGE_COUNT: &[u8] = b"*1\r\n*2\r\n$1\r\nq\r\n*999999999\r\n";

#[test]
fn a_declared_entry_count_does_not_reserve_memory_for_it() {
    if std::env::var_os("QUERN_FUZZ_CHILD").is_some() {
        assert!(parse_read_reply(HUGE_COUNT).is_none());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "ulimit -v 4194304 && exec \"$0\" --exact --test-threads=1 \
              a_declared_entry_count_does_not_reserve_memory_for_it",
        )
        .arg(exe)
        .env("QUERN_FUZZ_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parsing a 23-byte reply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// The same bug, fuzz/artifacts/resp_read_reply/panic-capacity-overflow: the largest count a
// length line can hold makes `reserve` panic ("capacity overflow").
#[test]
fn the_largest_declared_entry_count_does_not_panic() {
    let reply = b"*1\r\n*2\r\n$1\r\nq\r\n*9223372036854775807\r\n";
    assert!(parse_read_reply(reply).is_none());
}

// fuzz/artifacts/resp_read_reply/diff-nil-field-*: the two reply paths read a nil field value and
// a nil field name alike (they used to write "Nil" and "nil", and keep and skip the name).
#[test]
fn both_reply_paths_read_nil_fields_alike() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/artifacts/resp_read_reply");
    let key = |d: &Delivery| (d.entry_id.clone(), d.envelope.clone(), d.foreign_fields.clone());
    for name in ["diff-nil-field-value", "diff-nil-field-name"] {
        let bytes = std::fs::read(dir.join(name)).expect("the reproducer is kept");
        let ours = parse_read_reply(&bytes).expect("complete").expect("deliveries");
        let generic = parse_read_reply_generic(&bytes)
            .expect("complete")
            .expect("deliveries");
        assert_eq!(
            ours.iter().map(key).collect::<Vec<_>>(),
            generic.iter().map(key).collect::<Vec<_>>(),
            "{name}"
        );
    }
}
