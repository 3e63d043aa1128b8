//! `quern_redis::fuzzing::parse_read_reply` — Quern's own parser for `XREADGROUP` replies — on
//! arbitrary bytes: it must not panic, loop or allocate without bound, and where redis-rs's parser
//! (`redis::parse_redis_value`) and Quern's generic conversion also accept the bytes as one
//! complete reply of the shape Redis sends, both must give the same deliveries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quern_redis::Delivery;
use redis::Value;

/// Inputs over this are ignored (a reply is read with `COUNT`, so replies are small; the bound
/// keeps each execution fast). libFuzzer's `-rss_limit_mb` / `-malloc_limit_mb` catch allocations
/// driven by a declared length rather than by the bytes present.
const MAX_INPUT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let ours = quern_redis::fuzzing::parse_read_reply(data);

    // A reply is taken from the front of the buffer: what follows it must not change it.
    if let Some(first) = &ours {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"*-1\r\n");
        let again = quern_redis::fuzzing::parse_read_reply(&longer);
        match (first, &again) {
            (Ok(a), Some(Ok(b))) => assert_same(a, b, "bytes after the reply changed it"),
            (Err(a), Some(Err(b))) => assert_eq!(a, b, "bytes after the reply changed the error"),
            _ => panic!("bytes after the reply changed it: {first:?} then {again:?}"),
        }
    }

    // The differential check: redis-rs reads the same bytes.
    let Ok(value) = redis::parse_redis_value(data) else {
        return;
    };
    if !redis_shaped(&value) {
        return;
    }
    let Some(Ok(generic)) = quern_redis::fuzzing::parse_read_reply_generic(data) else {
        return;
    };
    match &ours {
        Some(Ok(d)) => assert_same(d, &generic, "Quern's parser and the generic path differ"),
        None => panic!("redis-rs read a complete reply, Quern's parser wants more bytes"),
        // Quern is stricter in places (a stream must be a pair, an entry a pair): not a bug.
        Some(Err(_)) => {}
    }
});

fn assert_same(a: &[Delivery], b: &[Delivery], what: &str) {
    let key = |d: &Delivery| {
        (
            d.entry_id.clone(),
            d.envelope.clone(),
            d.lease_expiries,
            d.foreign_fields.clone(),
            d.job_id.clone(),
        )
    };
    let a: Vec<_> = a.iter().map(key).collect();
    let b: Vec<_> = b.iter().map(key).collect();
    assert_eq!(a, b, "{what}");
}

/// The shape of an `XREADGROUP` reply as Redis sends it in RESP2: arrays, bulk strings and nils
/// only (`+`, `:` and RESP3 types are read differently by design: Quern's parser takes `:5` as
/// the text `5`, redis-rs gives `Int(5)`).
fn redis_shaped(v: &Value) -> bool {
    match v {
        Value::Nil | Value::BulkString(_) => true,
        Value::Array(items) => items.iter().all(redis_shaped),
        _ => false,
    }
}
