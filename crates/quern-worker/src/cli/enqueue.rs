//! `enqueue`: one job by name, with a JSON payload. A worker binary knows its job types: it
//! refuses a name it does not know and a payload that does not decode into the job's type,
//! and writes nothing then.

use std::process::ExitCode;
use std::time::Duration;

use quern_core::EnqueueOptions;
use quern_redis::{Producer, Storage, StorageError};

use super::EnqueueArgs;
use crate::Registry;

pub(super) async fn enqueue(
    storage: Storage,
    registry: &Registry,
    r: EnqueueArgs,
) -> Result<ExitCode, StorageError> {
    if registry.is_empty() {
        eprintln!(
            "note: this binary registers no job types, so it cannot check the job name {:?} or its payload; a worker binary's own CLI checks both",
            r.job
        );
    } else if let Err(why) = known(registry, &r.job) {
        eprintln!("error: {why}; nothing was enqueued");
        return Ok(ExitCode::from(2));
    } else if let Some(Err(e)) = registry.check_payload(&r.job, &r.json) {
        eprintln!(
            "error: the payload does not fit job {:?}, nothing was enqueued: {e}",
            r.job
        );
        return Ok(ExitCode::from(2));
    }
    let queue = r
        .queue
        .or_else(|| registry.options(&r.job).map(|o| o.queue.to_string()))
        .unwrap_or_else(|| "default".into());
    let mut options = EnqueueOptions::new().queue(queue);
    if let Some(ms) = r.delay_ms {
        options = options.delay(Duration::from_millis(ms));
    }
    if let Some(id) = r.id {
        options = options.id(id);
    }
    if let Some(n) = r.max_attempts {
        options = options.max_attempts(n);
    }
    if let Some(key) = r.unique {
        options = options.unique(quern_core::Unique::new(key));
    }
    let producer = Producer::new(storage);
    match producer.enqueue_json_with(&r.job, &r.json, options).await {
        Ok(done) => {
            out!("{}", done.id);
            if done.duplicate {
                eprintln!(
                    "note: job {:?} of queue {:?} is already there (the same id, or the holder of the unique key); nothing was enqueued",
                    done.id.as_str(),
                    done.queue
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(StorageError::Payload(e)) => {
            eprintln!("error: invalid JSON payload, nothing was enqueued: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e @ (StorageError::JobId(_) | StorageError::QueueName(_) | StorageError::Options(_))) => {
            eprintln!("error: {e}; nothing was enqueued");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}

/// `Ok` when `name` is registered, else what to say: the known names and the closest one.
fn known(registry: &Registry, name: &str) -> Result<(), String> {
    if registry.contains(name) {
        return Ok(());
    }
    let names = registry.names();
    let closest = names
        .iter()
        .map(|n| (strsim::jaro_winkler(name, n), *n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!(" (did you mean {n:?}?)"))
        .unwrap_or_default();
    Err(format!(
        "unknown job {name:?}{closest}: this binary knows {}",
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quern_core::{Job, JobContext, JobError};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct AddNumbers {
        a: i64,
        b: i64,
    }
    impl Job for AddNumbers {
        const NAME: &'static str = "add_numbers";
        type Resources = ();
        async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct SendEmail {
        to: String,
    }
    impl Job for SendEmail {
        const NAME: &'static str = "send_email";
        type Resources = ();
        async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones_and_the_closest() {
        let registry = Registry::new().register::<AddNumbers>().register::<SendEmail>();
        assert!(known(&registry, "add_numbers").is_ok());
        assert_eq!(
            known(&registry, "add_number").unwrap_err(),
            r#"unknown job "add_number" (did you mean "add_numbers"?): this binary knows "add_numbers", "send_email""#
        );
        assert_eq!(
            known(&registry, "zzz").unwrap_err(),
            r#"unknown job "zzz": this binary knows "add_numbers", "send_email""#
        );
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_caught_with_its_path() {
        let registry = Registry::new().register::<AddNumbers>();
        let err = registry
            .check_payload("add_numbers", r#"{"a": 1, "b": "two"}"#)
            .unwrap()
            .unwrap_err();
        assert_eq!(err.path.as_deref(), Some("b"), "{err}");
        assert!(
            registry
                .check_payload("add_numbers", r#"{"a": 1, "b": 2}"#)
                .unwrap()
                .is_ok()
        );
        assert!(registry.check_payload("nope", "{}").is_none());
    }
}
