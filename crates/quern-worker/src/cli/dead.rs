//! `dead list | show | retry | delete | purge`: the dead-letter set.

use std::process::ExitCode;

use quern_redis::StorageError;
use quern_redis::inspector::{Inspector, RetryDead, StoredRecord};

use super::DeadCommand;
use super::format::{format_ms, print_record};

pub(super) async fn dead(inspector: &Inspector, cmd: DeadCommand) -> Result<ExitCode, StorageError> {
    let queues = |queue: Option<String>| async move {
        match queue {
            Some(q) => Ok(vec![q]),
            None => inspector.queues().await,
        }
    };
    match cmd {
        DeadCommand::List { queue, limit } => {
            out!(
                "{:<38} {:<20} {:<16} {:<24} {:<20} message",
                "id",
                "job",
                "queue",
                "died at",
                "reason"
            );
            for q in queues(queue).await? {
                for d in inspector.dead_jobs(&q, limit).await? {
                    let (job, died, reason, message) = match &d.record {
                        StoredRecord::Parsed(r) => (
                            r.job.clone().unwrap_or_default(),
                            format_ms(r.died_at),
                            r.reason.describe().to_owned(),
                            r.message.clone(),
                        ),
                        StoredRecord::Unparsed(text) => {
                            (String::new(), String::new(), String::new(), text.clone())
                        }
                        _ => Default::default(),
                    };
                    let message: String = message.chars().take(100).collect();
                    out!("{:<38} {job:<20} {q:<16} {died:<24} {reason:<20} {message}", d.id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Show { id, queue } => match inspector.dead_job(&id, queue.as_deref()).await? {
            Some(d) => {
                out!("id:       {id}\nqueue:    {}", d.queue);
                match &d.record {
                    StoredRecord::Parsed(r) => print_record(r),
                    StoredRecord::Unparsed(text) => out!("record: {text}"),
                    _ => {}
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no dead job with id {id:?}");
                Ok(ExitCode::FAILURE)
            }
        },
        DeadCommand::Retry {
            id: Some(id), queue, ..
        } => match inspector.retry_dead(&id, queue.as_deref()).await? {
            RetryDead::Queued { queue } => {
                out!("{id} is back in queue {queue}");
                Ok(ExitCode::SUCCESS)
            }
            RetryDead::NotDead => {
                eprintln!("no dead job with id {id:?}");
                Ok(ExitCode::FAILURE)
            }
            RetryDead::NotRetryable { why } => {
                eprintln!("cannot retry {id}: {why}; see `dead show {id}`");
                Ok(ExitCode::FAILURE)
            }
            _ => Ok(ExitCode::FAILURE),
        },
        DeadCommand::Retry { id: None, queue, .. } => {
            let (mut revived, mut refused) = (0, 0);
            for q in queues(queue).await? {
                let r = inspector.retry_all_dead(&q).await?;
                revived += r.revived;
                refused += r.refused;
            }
            out!("{revived} job(s) back in their queues; {refused} refused");
            Ok(if refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DeadCommand::Delete { id, queue } => {
            if inspector.delete_dead(&id, queue.as_deref()).await? {
                out!("deleted {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no dead job with id {id:?}");
                Ok(ExitCode::FAILURE)
            }
        }
        DeadCommand::Purge { queue, yes: false } => {
            let mut total = 0;
            for q in queues(queue.clone()).await? {
                total += inspector.stats(&q).await?.dead;
            }
            let scope = queue.map_or_else(|| "every queue".to_owned(), |q| format!("queue {q}"));
            eprintln!(
                "this would delete {total} dead job(s) of {scope}, for good; run again with --yes to do it"
            );
            Ok(ExitCode::from(2))
        }
        DeadCommand::Purge { queue, yes: true } => {
            let total = inspector.purge_dead(queue.as_deref()).await?;
            out!("purged {total} dead job(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}
