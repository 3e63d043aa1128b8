//! `cron list` and `cron run <name>`: the periodic schedules known in Redis (declared by the
//! workers that started), read from their stored descriptions, so any binary lists and runs
//! them.

use std::process::ExitCode;

use quern_core::EnqueueOptions;
use quern_redis::{Inspector, Producer, StorageError};

use super::CronCommand;
use super::format::format_ms;
use crate::periodic::Description;

/// One known schedule.
struct Known {
    queue: String,
    name: String,
    description: Option<Description>,
}

async fn known(inspector: &Inspector) -> Result<Vec<Known>, StorageError> {
    let storage = inspector.storage();
    let mut out = Vec::new();
    for queue in storage.queues().await? {
        for (name, json) in storage.periodic_schedules(&storage.keys(&queue)).await? {
            out.push(Known {
                queue: queue.clone(),
                name,
                description: serde_json::from_str(&json).ok(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(super) async fn cron(inspector: &Inspector, cmd: CronCommand) -> Result<ExitCode, StorageError> {
    match cmd {
        CronCommand::List => list(inspector).await,
        CronCommand::Run { name } => run(inspector, &name).await,
    }
}

async fn list(inspector: &Inspector) -> Result<ExitCode, StorageError> {
    let storage = inspector.storage();
    let now = storage.clock().now_ms();
    let all = known(inspector).await?;
    if all.is_empty() {
        out!("no periodic schedules (a worker registers its schedules when it starts)");
        return Ok(ExitCode::SUCCESS);
    }
    out!("NAME\tQUEUE\tSCHEDULE\tZONE\tNEXT FIRE\tLAST FIRE\tLAST JOB ID");
    for k in all {
        let state = storage.periodic_state(&storage.keys(&k.queue), &k.name).await?;
        let (schedule, zone, next) = match &k.description {
            Some(d) => {
                let from = state.last_due_ms.unwrap_or(now).max(now);
                let next = d.periodic(&k.name).and_then(|p| p.next_after(from));
                (d.schedule.as_str(), d.zone.as_str(), next)
            }
            None => ("(unreadable)", "-", None),
        };
        let ms = |v: Option<u64>| v.map(format_ms).unwrap_or_else(|| "-".into());
        out!(
            "{}\t{}\t{schedule}\t{zone}\t{}\t{}\t{}",
            k.name,
            k.queue,
            ms(next),
            ms(state.last_fired_at_ms),
            state.last_id.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(inspector: &Inspector, name: &str) -> Result<ExitCode, StorageError> {
    let all = known(inspector).await?;
    let Some(k) = all.into_iter().find(|k| k.name == name) else {
        eprintln!("error: no periodic schedule {name:?} is known (see `cron list`); nothing enqueued");
        return Ok(ExitCode::FAILURE);
    };
    let Some(d) = k.description else {
        eprintln!("error: the description of schedule {name:?} is unreadable; nothing enqueued");
        return Ok(ExitCode::FAILURE);
    };
    let storage = inspector.storage();
    // Its own id, apart from the due-time runs: a manual run never stands in for one.
    let id = format!("cron:{name}:run:{}", storage.clock().now_ms());
    let producer = Producer::new(storage.clone());
    let options = EnqueueOptions::new().queue(&k.queue).id(id);
    let enqueued = producer
        .enqueue_json_with(&d.job, d.payload.get(), options)
        .await?;
    out!("enqueued {} to queue {:?}", enqueued.id, k.queue);
    Ok(ExitCode::SUCCESS)
}
