//! `job show`: any job, by its id.

use std::process::ExitCode;

use quern_redis::{Inspector, StorageError};

use super::format::{format_ms, print_record};

pub(super) async fn show(
    inspector: &Inspector,
    id: String,
    queue: Option<String>,
) -> Result<ExitCode, StorageError> {
    match inspector.find_job(&id, queue.as_deref()).await? {
        Some(job) => {
            out!(
                "id:       {}\nqueue:    {}\nstate:    {}",
                job.id,
                job.queue,
                job.state
            );
            if let Some(due) = job.due_ms {
                out!("due:      {}", format_ms(due));
            }
            if let Some(lease) = &job.lease {
                out!(
                    "worker:   {} (lease renewed {} ms ago)",
                    lease.worker,
                    lease.idle_ms
                );
            }
            match (&job.dead, &job.envelope) {
                (Some(record), _) => print_record(record),
                (None, Some(env)) => out!("stored:   {env}"),
                (None, None) => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no job with id {id:?} (completed jobs are not kept)");
            Ok(ExitCode::FAILURE)
        }
    }
}
