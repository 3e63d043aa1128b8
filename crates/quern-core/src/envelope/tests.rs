//! The envelope, ids and decoding, tested.

use super::id::uuid_v7_bits;
use super::*;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Page {
    title: String,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Site {
    id: u64,
    pages: Vec<Page>,
}

#[test]
fn wrong_type_reports_field_path_and_position() {
    let text = r#"{"id":1,"pages":[{"title":"a"},{"title":"b"},{"title":"c"},{"title":7}]}"#;
    let err = decode_payload::<Site>(text).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Data);
    assert_eq!(err.path.as_deref(), Some("pages[3].title"));
    assert_eq!(err.message, "invalid type: integer `7`, expected a string");
    assert_eq!(err.line, 1);
    assert_eq!(err.size, text.len());
    assert_eq!(&text[err.offset..err.offset + 1], "7");
    assert!(err.window.contains(r#"{"title":<<HERE>>7}]}"#), "{}", err.window);
    let shown = err.to_string();
    assert!(
        shown.starts_with("pages[3].title: invalid type: integer `7`, expected a string at line 1 column"),
        "{shown}"
    );
}

#[test]
fn syntax_error_has_window_and_escapes_control_characters() {
    let text = "{\"id\":1,\n\"pages\": [}\u{1}";
    let err = decode_payload::<Site>(text).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Syntax);
    assert_eq!(err.line, 2);
    assert!(
        err.window.contains("\\n\"pages\": [<<HERE>>}\\u{1}"),
        "{}",
        err.window
    );
}

#[test]
fn truncated_json_is_eof() {
    let err = decode_payload::<Site>(r#"{"id":1,"pages":[{"ti"#).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Eof);
    assert!(err.message.contains("truncated"), "{}", err.message);
    assert!(err.window.ends_with("<<HERE>>"), "{}", err.window);
}

#[test]
fn missing_field_is_reported() {
    let err = decode_payload::<Site>(r#"{"id":1}"#).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Data);
    assert_eq!(err.message, "missing field `pages`");
}

#[test]
fn invalid_utf8_names_the_byte() {
    let mut bytes = br#"{"id":"x","job":"a","payload":{"t":""#.to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(br#""}}"#);
    let err = decode_envelope(&bytes).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Utf8);
    assert_eq!(err.offset, bytes.len() - 4);
    assert!(err.window.contains("<<HERE>>\\xff"), "{}", err.window);
}

#[test]
fn non_envelope_is_refused() {
    let err = decode_envelope(br#"[1,2,3]"#).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Envelope);
    let err = decode_envelope(br#"{"id":"x","payload":{}}"#).unwrap_err();
    assert_eq!(err.message, "missing field `job`");
}

#[test]
fn long_text_is_windowed() {
    let text = format!(
        r#"{{"id":1,"pages":[{{"title":"{}"}},{{"title":false}}]}}"#,
        "x".repeat(200)
    );
    let err = decode_payload::<Site>(&text).unwrap_err();
    assert!(
        err.window.starts_with("...") && err.window.len() < 100,
        "{}",
        err.window
    );
}

#[test]
fn envelope_round_trips_and_keeps_payload_text() {
    let raw = encode_payload(&Site { id: 3, pages: vec![] }, MAX_PAYLOAD_BYTES).unwrap();
    let env = Envelope::new("site", &raw);
    let text = env.encode();
    let back = decode_envelope(text.as_bytes()).unwrap();
    assert_eq!(back.payload.get(), r#"{"id":3,"pages":[]}"#);
    assert_eq!(back.attempt, 1);
    assert_eq!(
        text,
        format!(
            r#"{{"id":"{}","job":"site","payload":{{"id":3,"pages":[]}}}}"#,
            env.id
        )
    );
    assert_eq!(env.id.as_str().len(), 26);
    assert!(JobId::new() > env.id, "ids are time-ordered");
    let next = back.next_attempt(Failure::new(1, "error", vec!["boom".into()]));
    assert_eq!(next.attempt, 2);
    assert_eq!(next.failures.len(), 1);
}

#[test]
fn oversized_payload_is_refused() {
    let err = encode_payload(&"x".repeat(100), 50).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TooLarge);
    assert!(err.to_string().contains("over the limit of 50 bytes"), "{err}");
}

#[test]
fn ids_are_uuid_v7_and_ordered_within_a_thread() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let first = uuid_v7_bits();
    assert_eq!((first >> 76) & 0xF, 7, "version 7");
    assert_eq!((first >> 62) & 0b11, 0b10, "RFC 9562 variant");
    let ms = (first >> 80) as u64;
    assert!(ms.abs_diff(now) < 5_000, "{ms} vs {now}");
    let ids: Vec<JobId> = (0..20_000).map(|_| JobId::new()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing, even within one ms"
    );
    assert!(ids.iter().all(|id| id.as_str().len() == 26));
}

#[test]
fn encode_new_writes_what_the_envelope_would() {
    #[derive(Serialize)]
    struct Page {
        title: &'static str,
        n: u64,
    }
    let page = Page {
        title: "a \"quoted\" title\n",
        n: 7,
    };
    let payload = encode_payload(&page, MAX_PAYLOAD_BYTES).unwrap();
    let mut headers = Headers::new();
    headers.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    let none = Headers::new();
    for (id, attempts, headers) in [
        (JobId::from(""), None, &none),
        (JobId::new(), None, &none),
        (JobId::from("order-42"), Some(3), &headers),
    ] {
        let new = NewEnvelope::new(&id, "site\"gen", headers).max_attempts(attempts);
        let text = encode_new(&new, &page, MAX_PAYLOAD_BYTES).unwrap();
        let mut env = Envelope::with_id(id.clone(), "site\"gen", &payload);
        env.max_attempts = attempts;
        env.headers = headers.clone();
        assert_eq!(text, env.encode());
        assert_eq!(
            serde_json::to_string(&env).unwrap(),
            text,
            "serde writes the same bytes"
        );
        assert_eq!(
            text.contains("\"id\""),
            !id.is_unset(),
            "an unset id is not written"
        );
        let back = decode_envelope(text.as_bytes()).unwrap();
        assert_eq!((back.id, back.job.as_str()), (id, "site\"gen"));
        assert_eq!((back.max_attempts, &back.headers), (attempts, headers));
    }
    let no_id = JobId::from("");
    let err = encode_new(&NewEnvelope::new(&no_id, "big", &none), &"x".repeat(100), 50).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TooLarge);
}

#[test]
fn an_empty_id_is_refused_and_a_missing_one_is_unset() {
    let err = decode_envelope(br#"{"id":"","job":"j","payload":{}}"#).unwrap_err();
    assert!(err.to_string().contains("the job id is empty"), "{err}");
    assert_eq!(err.path.as_deref(), Some("id"));
    let env = decode_envelope(br#"{"job":"j","payload":{}}"#).unwrap();
    assert!(env.id.is_unset());
    let id = JobId::for_entry("a/b", "1700000000000-3");
    assert_eq!(id.as_str(), "a/b/1700000000000-3");
    assert_eq!(id.entry(), Some(("a/b", "1700000000000-3")));
    assert_eq!(JobId::new().entry(), None);
}

#[test]
fn invisible_characters_are_escaped_in_diagnostics() {
    let err = decode_envelope("\u{feff}{\"job\":1}".as_bytes()).unwrap_err();
    assert!(err.message.contains("\\u{feff}"), "{}", err.message);
    assert!(
        !err.message.contains('\u{feff}') && !err.window.contains('\u{feff}'),
        "{err:?}"
    );
    let err = decode_payload::<u32>("\u{200b}7").unwrap_err();
    assert!(
        err.window.contains("\\u{200b}") && !err.window.contains('\u{200b}'),
        "{err:?}"
    );
}
