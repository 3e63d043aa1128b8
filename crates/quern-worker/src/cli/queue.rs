//! `queue pause` and `queue resume`.

use std::process::ExitCode;

use quern_redis::{Inspector, Paused, StorageError};

use super::QueueCommand;

pub(super) async fn queue(inspector: &Inspector, cmd: QueueCommand) -> Result<ExitCode, StorageError> {
    let (queue, done) = match cmd {
        QueueCommand::Pause { queue } => {
            let done = inspector.pause(&queue).await;
            (queue, done.map(|p| (p, "paused", "was already paused")))
        }
        QueueCommand::Resume { queue } => {
            let done = inspector.resume(&queue).await;
            (queue, done.map(|p| (p, "resumed", "was not paused")))
        }
    };
    match done {
        Ok((Paused::Changed, did, _)) => {
            out!("queue {queue:?} {did} (workers notice within a second)");
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, _, already)) => {
            out!("queue {queue:?} {already}; nothing changed");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ StorageError::UnknownQueue { .. }) => {
            eprintln!("error: {e}; nothing changed");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e),
    }
}
