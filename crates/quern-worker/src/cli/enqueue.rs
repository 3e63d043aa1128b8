//! `enqueue`: one job by name, with a JSON payload.

use std::process::ExitCode;
use std::time::Duration;

use quern_redis::{Producer, Storage, StorageError};

use crate::Registry;

pub(super) async fn enqueue(
    storage: Storage,
    registry: &Registry,
    job: String,
    json: String,
    queue: Option<String>,
    delay_ms: Option<u64>,
) -> Result<ExitCode, StorageError> {
    let queue = queue
        .or_else(|| registry.options(&job).map(|o| o.queue.to_string()))
        .unwrap_or_else(|| "default".into());
    let at = delay_ms.map(|ms| storage.clock().now() + Duration::from_millis(ms));
    let producer = Producer::new(storage);
    match producer.enqueue_json(&queue, &job, &json, at).await {
        Ok(id) => {
            out!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(StorageError::Payload(e)) => {
            eprintln!("error: invalid JSON payload, nothing was enqueued: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}
