//! Inputs fed to the `envelope` fuzz target in `fuzz/` (see `docs/fuzzing.md`), replayed through
//! the public API: decoding never panics, and every error says what and where, inside the input.

use quern_core::envelope::{DecodeError, DecodeErrorKind, decode_envelope, decode_payload};

fn checked(e: DecodeError, input_len: usize) -> DecodeError {
    assert!(!e.message.is_empty(), "{e:?}");
    assert!(e.offset <= e.size && e.size <= input_len, "{e:?}");
    let _ = e.to_string();
    e
}

fn refused(bytes: &[u8]) -> DecodeError {
    match decode_envelope(bytes) {
        Ok(env) => panic!("decoded {env:?}"),
        Err(e) => checked(e, bytes.len()),
    }
}

// fuzz/corpus/envelope/seed_*.
#[test]
fn seed_envelopes_decode() {
    let env = decode_envelope(br#"{"id":"x","job":"j","payload":{}}"#).unwrap();
    assert_eq!((env.id.as_str(), env.job.as_str(), env.attempt), ("x", "j", 1));
    assert_eq!(env.payload.get(), "{}");

    let retry = br#"{"id":"06F9QZ0VJ3T8A2M4N5P6Q7R8S9","job":"send_email","attempt":3,"failures":[{"attempt":1,"at":1700000001000,"kind":"error","chain":["smtp refused","connection reset"]},{"attempt":2,"at":1700000002000,"kind":"timeout","chain":[]}],"payload":{"to":"a@example.com"}}"#;
    let env = decode_envelope(retry).unwrap();
    assert_eq!((env.attempt, env.failures.len()), (3, 2));
    let text = env.encode();
    let again = decode_envelope(text.as_bytes()).unwrap();
    assert_eq!((again.attempt, &again.failures), (env.attempt, &env.failures));
    let payload: serde_json::Value = decode_payload(env.payload.get()).unwrap();
    assert_eq!(payload, serde_json::json!({"to": "a@example.com"}));
}

#[test]
fn seed_envelopes_are_refused_with_where_and_why() {
    // No id is fine (the entry's id stands for it); an empty one is refused, at the field.
    assert!(
        decode_envelope(br#"{"job":"j","payload":{"to":"a@example.com"}}"#)
            .unwrap()
            .id
            .is_unset()
    );
    let e = refused(br#"{"id":"","job":"j","payload":{"to":"a@example.com"}}"#);
    assert_eq!(
        (e.kind, e.path.as_deref()),
        (DecodeErrorKind::Envelope, Some("id"))
    );
    assert!(e.message.contains("the job id is empty"), "{e}");

    // A byte-order mark is not whitespace: not an envelope, at byte 0.
    let e = refused(b"\xef\xbb\xbf{\"id\":\"x\",\"job\":\"j\",\"payload\":{}}");
    assert_eq!((e.kind, e.offset), (DecodeErrorKind::Envelope, 0));

    // Invalid UTF-8: the offset of the first bad byte.
    let bytes = b"{\"id\":\"x\",\"job\":\"j\xff\xfe\",\"payload\":{}}";
    let e = refused(bytes);
    assert_eq!((e.kind, e.offset), (DecodeErrorKind::Utf8, 18));

    // Truncated, the wrong type, empty, trailing bytes.
    let e = refused(br#"{"id":"x","job":"j","payload":{"to":"#);
    assert_eq!(e.kind, DecodeErrorKind::Eof);
    let e = refused(br#"{"id":"x","job":"j","attempt":"two","payload":{}}"#);
    assert_eq!(
        (e.kind, e.path.as_deref()),
        (DecodeErrorKind::Envelope, Some("attempt"))
    );
    assert_eq!(refused(b"").kind, DecodeErrorKind::Envelope);
    assert_eq!(refused(b"  \n [\"id\"]").line, 2);
    refused(b"{\n  \"id\": \"x\",\n  \"job\": \"j\",\n  \"payload\": {\"to\": 1}\n} trailing");
}

#[test]
fn payload_errors_point_inside_the_payload() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Job {
        to: String,
    }
    for text in ["", "{", r#"{"to":1}"#, "{\"to\":\"a\"} x", "\n\n\n", "[1,2"] {
        let e = decode_payload::<Job>(text).unwrap_err();
        checked(e, text.len());
    }
}
