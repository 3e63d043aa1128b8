//! `quern_core::envelope::{decode_envelope, decode_payload}` on arbitrary bytes, as any producer
//! may write them into a stream: never a panic; every error says something and points inside
//! the input (`offset <= size`); a decoded envelope re-encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quern_core::envelope::{DecodeError, decode_envelope, decode_payload};
use serde::Deserialize;

const MAX_INPUT: usize = 64 * 1024;

/// A job's fields of several shapes, for the typed decode.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Job {
    to: String,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    pages: Vec<Page>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Plain,
    Weighted { weight: f64 },
    Tagged(String),
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
struct Page {
    title: String,
    #[serde(default)]
    score: i32,
}

fn check(e: &DecodeError, input_len: usize) {
    assert!(!e.message.is_empty(), "an error without a message: {e:?}");
    assert!(e.offset <= e.size, "offset past the end: {e:?}");
    assert!(
        e.size <= input_len,
        "size larger than the input ({input_len}): {e:?}"
    );
    let _ = e.to_string();
}

fn payloads(text: &str) {
    match decode_payload::<serde_json::Value>(text) {
        Ok(_) => {}
        Err(e) => check(&e, text.len()),
    }
    match decode_payload::<Job>(text) {
        Ok(_) => {}
        Err(e) => check(&e, text.len()),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    match decode_envelope(data) {
        Err(e) => check(&e, data.len()),
        Ok(env) => {
            payloads(env.payload.get());
            // What Quern writes back (a retry, a dead record) decodes to the same envelope.
            let text = env.encode();
            let again = decode_envelope(text.as_bytes())
                .unwrap_or_else(|e| panic!("re-encoded envelope {text:?} does not decode: {e}"));
            assert_eq!(
                (&again.id, &again.job, &again.queue, again.attempt),
                (&env.id, &env.job, &env.queue, env.attempt)
            );
            assert_eq!(
                (again.enqueued_at, again.max_attempts, &again.failures),
                (env.enqueued_at, env.max_attempts, &env.failures)
            );
            assert_eq!(again.payload.get(), env.payload.get());
        }
    }
    // Payload decoding on its own, on any text (a payload is whatever JSON the producer wrote).
    if let Ok(text) = std::str::from_utf8(data) {
        payloads(text);
    }
});
