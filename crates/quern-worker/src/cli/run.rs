//! `run`: a worker until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use quern_redis::{Storage, StorageError};

use super::RunArgs;
use crate::{Registry, Worker, WorkerConfig};

pub(super) async fn run(
    storage: Storage,
    registry: Registry,
    args: RunArgs,
    configure: impl FnOnce(Worker) -> Worker,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<ExitCode, StorageError> {
    if registry.names().is_empty() {
        eprintln!(
            "warning: this binary registers no job types: every job it claims is dead-lettered as unknown"
        );
    }
    let config = WorkerConfig {
        queues: args.queues,
        concurrency: args.concurrency,
        lease: Duration::from_secs(args.lease_secs.max(1)),
        grace: Duration::from_secs(args.grace_secs),
        ..WorkerConfig::default()
    };
    let worker = configure(Worker::new(storage, registry).config(config));
    match worker.run(shutdown).await {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(crate::WorkerError::Storage(e)) => Err(e),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
