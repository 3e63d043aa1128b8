//! `job show` and `job cancel`: any job, by its id.

use std::process::ExitCode;

use quern_core::envelope::decode_envelope;
use quern_redis::{Cancelled, Inspector, StorageError};

use super::format::{format_ms, print_failure, print_record};

pub(super) async fn show(
    inspector: &Inspector,
    id: String,
    queue: Option<String>,
) -> Result<ExitCode, StorageError> {
    let Some(job) = inspector.find_job(&id, queue.as_deref()).await? else {
        eprintln!(
            "no job with id {id:?} (a completed job is kept only when its type keeps results: JobOptions::keep_result)"
        );
        return Ok(ExitCode::FAILURE);
    };
    out!("id:       {}", job.id);
    out!("queue:    {}", job.queue);
    out!("state:    {}", job.state);
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
    if let Some(done) = &job.finished {
        out!("job:      {}", done.job);
        out!("attempt:  {}", done.attempt);
        if done.enqueued_at > 0 {
            out!("enqueued: {}", format_ms(done.enqueued_at));
        }
        out!("finished: {}", format_ms(done.finished_at));
        if let Some(f) = &done.last_error {
            out!("last error:");
            print_failure(f);
        }
        match &done.result {
            Some(result) => out!("result:   {result}"),
            None => out!("result:   (none)"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(record) = &job.dead {
        print_record(record);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(env) = &job.envelope {
        if let Ok(e) = decode_envelope(env.as_bytes()) {
            out!("job:      {}", e.job);
            let budget = e.max_attempts.map(|n| format!(" of {n}")).unwrap_or_default();
            out!("attempt:  {}{budget}", e.attempt);
            if let Some(at) = e.enqueued_at {
                out!("enqueued: {}", format_ms(at));
            }
            if let Some(f) = e.failures.last() {
                out!("last error:");
                print_failure(f);
            }
        }
        out!("stored:   {env}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cancel(
    inspector: &Inspector,
    id: String,
    queue: Option<String>,
) -> Result<ExitCode, StorageError> {
    match inspector.cancel(&id, queue.as_deref()).await? {
        Cancelled::Removed { was, queue } => {
            out!("cancelled job {id:?} of queue {queue:?}: it was {was}, and will never run");
            Ok(ExitCode::SUCCESS)
        }
        Cancelled::Requested { queue } => {
            out!(
                "job {id:?} of queue {queue:?} is running: its worker stops it within a second (it ends as cancelled, never retried)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Cancelled::AlreadyFinished { state } => {
            eprintln!("job {id:?} is {state} already; nothing changed");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("no job with id {id:?}; nothing changed");
            Ok(ExitCode::FAILURE)
        }
    }
}
