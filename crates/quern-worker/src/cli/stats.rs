//! `stats`: counts per queue.

use std::process::ExitCode;

use quern_redis::{Inspector, StorageError};

pub(super) async fn stats(
    inspector: &Inspector,
    queues: Vec<String>,
    json: bool,
) -> Result<ExitCode, StorageError> {
    let queues = if queues.is_empty() {
        inspector.queues().await?
    } else {
        queues
    };
    let mut all = Vec::new();
    for q in &queues {
        all.push(inspector.stats(q).await?);
    }
    let server = inspector.server_health().await;
    if json {
        let out = serde_json::json!({ "queues": all, "server": server });
        out!("{}", serde_json::to_string_pretty(&out).expect("stats serialize"));
    } else {
        out!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9}",
            "queue",
            "pending",
            "running",
            "scheduled",
            "retrying",
            "dead",
            "completed",
            "failed",
            "cancelled"
        );
        for s in &all {
            let name = if s.paused {
                format!("{} (paused)", s.queue)
            } else {
                s.queue.clone()
            };
            out!(
                "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9}",
                name,
                s.pending,
                s.running,
                s.scheduled,
                s.retrying,
                s.dead,
                s.completed,
                s.failed,
                s.cancelled
            );
        }
        if all.is_empty() {
            out!("(no queues yet)");
        }
        out!("{}", server.summary());
    }
    Ok(ExitCode::SUCCESS)
}
