//! `quern_redis::fuzzing::parse_replies` — Quern's parser for the replies to a pipeline of simple
//! commands (`XADD`, `XACK`, counts) — on arbitrary bytes, with the number of replies expected
//! taken from the first byte: it must not panic or loop, and a complete result must be
//! self-consistent (the bytes it says it used hold the same replies; one byte fewer is
//! incomplete).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quern_redis::fuzzing::parse_replies;

const MAX_INPUT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() || data.len() > MAX_INPUT {
        return;
    }
    let n = usize::from(data[0]);
    let buf = &data[1..];
    let Some(result) = parse_replies(buf, n) else {
        return;
    };
    let Ok((error, used)) = result else {
        return;
    };
    assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
    if let Some(line) = &error {
        assert!(buf[..used].contains(&b'-'), "an error line {line:?} from no `-`");
    }
    // The bytes used hold the same replies...
    match parse_replies(&buf[..used], n) {
        Some(Ok((e, u))) => assert_eq!((e, u), (error, used)),
        other => panic!("the {used} bytes used read as {other:?}"),
    }
    // ...and with one byte fewer they are incomplete.
    if n > 0 {
        assert!(used > 0, "{n} replies in no bytes");
        let short = parse_replies(&buf[..used - 1], n);
        assert!(short.is_none(), "one byte short of complete read as {short:?}");
    }
});
