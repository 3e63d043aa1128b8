//! Failures that lose nothing: malformed payloads, error chains, panics, timeouts, retries and
//! dead letters — each checked for its error text and for what was kept.
mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::RunningWorker;
use quern::{
    Backoff, DeadReason, DeadRecord, DecodeErrorKind, Job, JobContext, JobError, JobOptions, Producer,
    RedisConfig, Registry, Storage, Worker,
};
use serde::{Deserialize, Serialize};

static RUNS: Mutex<Vec<(String, u64, u32)>> = Mutex::new(Vec::new());

fn runs(tag: &str) -> HashMap<u64, Vec<u32>> {
    let mut m: HashMap<u64, Vec<u32>> = HashMap::new();
    for (t, n, attempt) in RUNS.lock().unwrap().iter() {
        if t == tag {
            m.entry(*n).or_default().push(*attempt);
        }
    }
    m
}

#[derive(Serialize, Deserialize)]
struct Page {
    title: String,
}

#[derive(Serialize, Deserialize)]
struct Site {
    id: u64,
    pages: Vec<Page>,
}

impl Job for Site {
    const NAME: &'static str = "site";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("failures")
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        RUNS.lock().unwrap().push(("site".into(), self.id, ctx.attempt));
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not render page {page}")]
struct RenderError {
    page: u32,
    #[source]
    source: std::io::Error,
}

#[derive(Serialize, Deserialize)]
struct Flaky {
    tag: String,
    n: u64,
    /// `error`, `permanent`, `panic`, `timeout`, or `fail_once`.
    mode: String,
}

impl Job for Flaky {
    const NAME: &'static str = "flaky";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new()
            .queue("failures")
            .max_attempts(3)
            .backoff(Backoff::Fixed(Duration::from_millis(20)))
            .timeout(Duration::from_millis(200))
    }
    async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
        RUNS.lock().unwrap().push((self.tag.clone(), self.n, ctx.attempt));
        match self.mode.as_str() {
            "error" => Err(JobError::from(RenderError {
                page: 3,
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "upstream refused the connection",
                ),
            })
            .context(format!("generating site {}", self.n))),
            "permanent" => Err(JobError::permanent("the site was deleted")),
            "panic" => panic!("page template missing for site {}", self.n),
            "timeout" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }
            "fail_once" if ctx.attempt == 1 => Err(JobError::msg("first attempt fails")),
            _ => Ok(()),
        }
    }
}

fn registry() -> Registry {
    Registry::new().register::<Site>().register::<Flaky>()
}

async fn dead_record(storage: &Storage, id: &str) -> DeadRecord {
    common::dead_record(storage, "failures", id)
        .await
        .unwrap_or_else(|| panic!("{id} is not dead"))
}

async fn xadd(url: &str, stream: &str, field: &str, value: &[u8]) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(field)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

fn envelope(id: &str, payload: &str) -> String {
    format!(
        r#"{{"id":"{id}","job":"site","queue":"failures","attempt":1,"enqueued_at":1,"payload":{payload}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_dead_lettered_with_diagnostics_and_the_batch_runs_on() {
    common::init_tracing();
    let url = test_support::redis_url();
    let prefix = test_support::unique_name("qt");
    let storage = Storage::connect(RedisConfig::new(&url).prefix(&prefix).max_payload_bytes(300))
        .await
        .unwrap();
    let keys = storage.keys("failures");
    let stream = keys.stream.clone();
    let good = |n: u64| {
        envelope(
            &format!("good-{n}"),
            &format!(r#"{{"id":{n},"pages":[{{"title":"t"}}]}}"#),
        )
    };

    let syntax = r#"{"id":"syn","job":"site","payload":{"id":1,"pages":[{"title":"a"},]}}"#.to_owned();
    let truncated = r#"{"id":"trunc","job":"site","payload":{"id":1,"pages":[{"ti"#.to_owned();
    let wrong_type = envelope(
        "wrong",
        r#"{"id":1,"pages":[{"title":"a"},{"title":"b"},{"title":"c"},{"title":7}]}"#,
    );
    let missing = envelope("missing", r#"{"id":1}"#);
    let mut utf8 = br#"{"id":"utf8","job":"site","payload":{"id":1,"pages":[{"title":"caf"#.to_vec();
    utf8.extend_from_slice(&[0xff, 0xfe]);
    utf8.extend_from_slice(br#""}]}}"#);
    let not_envelope = "[1,2,3]".to_owned();
    let big = envelope(
        "big",
        &format!(r#"{{"id":1,"pages":[{{"title":"{}"}}]}}"#, "x".repeat(400)),
    );

    xadd(&url, &stream, "e", good(1).as_bytes()).await;
    for bad in [&syntax, &truncated, &wrong_type, &missing] {
        xadd(&url, &stream, "e", bad.as_bytes()).await;
    }
    xadd(&url, &stream, "e", &utf8).await;
    xadd(&url, &stream, "e", not_envelope.as_bytes()).await;
    xadd(&url, &stream, "legacy", b"not ours").await;
    // What docs/wire-format.md forbids: an empty id, an empty `e` field, a byte-order mark.
    let empty_id = r#"{"id":"","job":"site","payload":{"id":1,"pages":[]}}"#.to_owned();
    xadd(&url, &stream, "e", empty_id.as_bytes()).await;
    xadd(&url, &stream, "e", b"").await;
    let bom = format!("\u{feff}{}", good(3));
    xadd(&url, &stream, "e", bom.as_bytes()).await;
    xadd(&url, &stream, "e", big.as_bytes()).await;
    xadd(&url, &stream, "e", good(2).as_bytes()).await;

    let w = RunningWorker::start(Worker::new(storage.clone(), registry()));
    let settled = common::wait_until(Duration::from_secs(15), || async {
        let s = storage.stats(&keys).await.unwrap();
        s.dead == 11 && s.completed == 2
    })
    .await;
    w.stop().await;
    assert!(settled, "{:?}", storage.stats(&keys).await.unwrap());
    assert_eq!(runs("site").len(), 2, "both good jobs of the batch ran");

    let r = dead_record(&storage, "syn").await;
    let d = r.decode.as_ref().unwrap();
    assert_eq!(
        (r.reason, d.kind),
        (DeadReason::Undecodable, DecodeErrorKind::Syntax)
    );
    assert_eq!(r.job.as_deref(), Some("site"));
    assert_eq!((d.line, d.size), (1, syntax.len()));
    assert!(d.window.contains(r#"{"title":"a"},<<HERE>>]}}"#), "{}", d.window);
    assert_eq!(
        r.envelope.as_deref(),
        Some(syntax.as_str()),
        "the job is kept verbatim"
    );

    let r = dead_record(&storage, "trunc").await;
    let d = r.decode.as_ref().unwrap();
    assert_eq!(d.kind, DecodeErrorKind::Eof);
    assert!(d.message.contains("truncated"), "{}", d.message);
    assert_eq!(d.offset, truncated.len());

    let r = dead_record(&storage, "wrong").await;
    let d = r.decode.as_ref().unwrap();
    assert_eq!(d.kind, DecodeErrorKind::Data);
    assert_eq!(d.path.as_deref(), Some("pages[3].title"));
    assert_eq!(d.message, "invalid type: integer `7`, expected a string");
    assert!(
        r.message
            .contains("pages[3].title: invalid type: integer `7`, expected a string at line 1 column")
    );
    assert_eq!(r.envelope.as_deref(), Some(wrong_type.as_str()));

    let r = dead_record(&storage, "missing").await;
    assert_eq!(r.decode.as_ref().unwrap().message, "missing field `pages`");

    let r = dead_record(&storage, "utf8").await;
    let d = r.decode.as_ref().unwrap();
    assert_eq!(d.kind, DecodeErrorKind::Utf8);
    assert_eq!(d.offset, utf8.len() - 7, "the first invalid byte");
    assert!(
        d.window.contains(r#""title":"caf<<HERE>>\xff\xfe"#),
        "{}",
        d.window
    );
    let hex: String = utf8.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        r.raw_hex.as_deref(),
        Some(hex.as_str()),
        "invalid UTF-8 is kept, in hex"
    );

    let dead = common::dead_records(&storage, &keys.queue, 100).await;
    let not_env: Vec<DeadRecord> = dead
        .iter()
        .filter(|r| r.id.starts_with(&format!("{}/", keys.queue)))
        .cloned()
        .collect();
    assert_eq!(not_env.len(), 4, "{not_env:?}");
    let empty = not_env
        .iter()
        .find(|r| r.envelope.as_deref() == Some(empty_id.as_str()))
        .expect("the envelope with an empty id is dead");
    let d = empty.decode.as_ref().unwrap();
    assert_eq!(d.path.as_deref(), Some("id"));
    assert!(d.message.contains("the job id is empty"), "{}", d.message);
    assert!(
        not_env.iter().any(|r| r.envelope.as_deref() == Some("")
            && r.decode.as_ref().unwrap().message.contains("`e` field is empty")),
        "an empty e field is named as such: {not_env:?}"
    );
    let with_bom = dead
        .iter()
        .find(|r| r.envelope.as_deref() == Some(bom.as_str()))
        .expect("the BOM-prefixed envelope is dead");
    let d = with_bom.decode.as_ref().unwrap();
    assert!(
        d.message.contains("found `\\u{feff}`"),
        "the BOM is shown escaped: {}",
        d.message
    );
    assert!(
        !d.message.contains('\u{feff}') && !d.window.contains('\u{feff}'),
        "{d:?}"
    );
    assert!(not_env.iter().any(|r| r.envelope.as_deref() == Some("[1,2,3]")
        && r.decode.as_ref().unwrap().message == "not a Quern envelope: expected a JSON object, found `[`"));
    assert!(
        not_env
            .iter()
            .any(|r| r.envelope.as_deref() == Some(r#"{"legacy":"not ours"}"#)
                && r.decode.as_ref().unwrap().message.contains("no `e` field"))
    );

    let r = dead_record(&storage, "big").await;
    let d = r.decode.as_ref().unwrap();
    assert_eq!(d.kind, DecodeErrorKind::TooLarge);
    assert!(d.message.contains("over the limit of 300 bytes"), "{}", d.message);

    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test]
async fn an_oversized_payload_is_refused_at_enqueue_and_nothing_is_written() {
    let url = test_support::redis_url();
    let storage = Storage::connect(
        RedisConfig::new(&url)
            .prefix(test_support::unique_name("qt"))
            .max_payload_bytes(100),
    )
    .await
    .unwrap();
    let keys = storage.keys("failures");
    let producer = Producer::new(storage.clone());
    let site = Site {
        id: 1,
        pages: vec![Page {
            title: "x".repeat(200),
        }],
    };
    let err = producer.enqueue(&site).await.unwrap_err();
    let text = quern::ErrorChain::of(&err).to_string();
    let size = serde_json::to_string(&site).unwrap().len();
    assert!(
        text.contains(&format!("payload is {size} bytes, over the limit of 100 bytes")),
        "{text}"
    );
    let err = producer
        .enqueue_json("failures", "site", r#"{"id":1,"pages":[}"#, None)
        .await
        .unwrap_err();
    let text = quern::ErrorChain::of(&err).to_string();
    assert!(text.contains("expected value at line 1 column 18"), "{text}");
    let stats = storage.stats(&keys).await.unwrap();
    assert_eq!((stats.pending, stats.scheduled), (0, 0), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_honour_max_attempts_and_dead_records_keep_the_cause_chain() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("failures");
    let producer = Producer::new(storage.clone());
    let mut ids = HashMap::new();
    for (n, mode) in ["error", "permanent", "panic", "timeout"].into_iter().enumerate() {
        let id = producer
            .enqueue(&Flaky {
                tag: "retries".into(),
                n: n as u64,
                mode: mode.into(),
            })
            .await
            .unwrap();
        ids.insert(mode, id.to_string());
    }
    let w = RunningWorker::start(Worker::new(storage.clone(), registry()));
    let settled = common::wait_until(Duration::from_secs(20), || async {
        storage.stats(&keys).await.unwrap().dead == 4
    })
    .await;
    w.stop().await;
    assert!(settled, "{:?}", storage.stats(&keys).await.unwrap());
    let attempts = runs("retries");
    assert_eq!(
        attempts[&0],
        vec![1, 2, 3],
        "a retryable failure runs exactly max_attempts times"
    );
    assert_eq!(attempts[&1], vec![1], "a permanent failure is not retried");
    assert_eq!(attempts[&2], vec![1, 2, 3]);
    assert_eq!(attempts[&3], vec![1, 2, 3]);

    let r = dead_record(&storage, &ids["error"]).await;
    assert_eq!(
        (r.reason, r.attempt, r.failures.len()),
        (DeadReason::MaxAttempts, 3, 3)
    );
    let last = r.failures.last().unwrap();
    assert_eq!(last.kind, "error");
    assert_eq!(
        last.chain,
        vec![
            "generating site 0",
            "could not render page 3",
            "upstream refused the connection"
        ],
        "the whole cause chain is kept"
    );
    assert_eq!(
        r.failures.iter().map(|f| f.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let r = dead_record(&storage, &ids["permanent"]).await;
    assert_eq!((r.reason, r.attempt), (DeadReason::Permanent, 1));
    assert_eq!(r.failures[0].chain, vec!["the site was deleted"]);

    let r = dead_record(&storage, &ids["panic"]).await;
    let msg = &r.failures.last().unwrap().chain[0];
    assert!(
        msg.starts_with("panicked: page template missing for site 2 (at tests/failures.rs:"),
        "{msg}"
    );

    let r = dead_record(&storage, &ids["timeout"]).await;
    assert_eq!(r.failures.last().unwrap().kind, "timeout");
    assert_eq!(r.failures.last().unwrap().chain, vec!["timed out after 200 ms"]);
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_schedule_survives_a_worker_restart() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("failures");
    let producer = Producer::new(storage.clone());
    producer
        .enqueue(&Flaky {
            tag: "restart".into(),
            n: 1,
            mode: "fail_once".into(),
        })
        .await
        .unwrap();
    let registry = Registry::new()
        .register_with::<Flaky>(Flaky::options().backoff(Backoff::Fixed(Duration::from_millis(1500))));
    let w = RunningWorker::start(Worker::new(storage.clone(), registry.clone()));
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            storage.stats(&keys).await.unwrap().retrying == 1
        })
        .await
    );
    w.stop().await;
    assert_eq!(runs("restart")[&1], vec![1]);
    let w = RunningWorker::start(Worker::new(storage.clone(), registry));
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            storage.stats(&keys).await.unwrap().completed == 1
        })
        .await
    );
    w.stop().await;
    assert_eq!(runs("restart")[&1], vec![1, 2]);
    storage.delete_queue(&keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_retention_is_bounded() {
    common::init_tracing();
    let storage = common::storage(&test_support::redis_url()).await;
    let keys = storage.keys("failures");
    let producer = Producer::new(storage.clone());
    for n in 0..8 {
        producer
            .enqueue(&Flaky {
                tag: "retention".into(),
                n,
                mode: "permanent".into(),
            })
            .await
            .unwrap();
    }
    let w = Worker::new(storage.clone(), registry()).configure(|c| {
        c.concurrency = 1;
        c.dead_retention.max_count = 5;
    });
    let w = RunningWorker::start(w);
    assert!(common::wait_until(Duration::from_secs(10), || async { runs("retention").len() == 8 }).await);
    let w_report = w.stop().await;
    assert_eq!(w_report.dead, 8);
    let dead = common::dead_records(&storage, &keys.queue, 100).await;
    assert_eq!(dead.len(), 5, "only the newest 5 are kept");
    assert_eq!(storage.stats(&keys).await.unwrap().dead, 5);
    storage.delete_queue(&keys).await.unwrap();
}
