//! Settling finished executions: completed, retried, snoozed or dead-lettered.
//!
//! Every write here is safe to send again after a timeout: each script first acknowledges the
//! running copy (`XACK`) and writes nothing when it was no longer leased, so a replayed batch
//! changes nothing, counters included.

use quern_core::{Settle, SettleOptions};

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys};
use crate::scripts;

use super::{BATCH, Storage, script_cmd};

impl Storage {
    /// Settles finished executions in one round trip.
    ///
    /// Completed jobs are acknowledged and counted by how many acknowledgements Redis applied;
    /// their entries are deleted now only with
    /// [`delete_completed`](SettleOptions::delete_completed), and otherwise left to
    /// [`trim_acked`](Self::trim_acked), which removes them in blocks for less work in Redis. The
    /// worker deletes them at once while a long-leased entry holds trimming back.
    pub async fn settle(
        &self,
        keys: &QueueKeys,
        ops: &[Settle],
        options: SettleOptions,
    ) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut completed: Vec<&str> = Vec::new();
        let now = self.clock.now_ms();
        let retention = options.retention;
        let oldest_kept =
            now.saturating_sub(u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX));
        for op in ops {
            match op {
                Settle::Complete { entry_id, .. } => completed.push(entry_id),
                Settle::Retry {
                    entry_id,
                    due_ms,
                    envelope,
                    ..
                } => retry(&mut pipe, keys, entry_id, *due_ms, envelope, true),
                Settle::Snooze {
                    entry_id,
                    due_ms,
                    envelope,
                    ..
                } => retry(&mut pipe, keys, entry_id, *due_ms, envelope, false),
                Settle::Dead {
                    entry_id,
                    job_id,
                    record,
                } => script_cmd(
                    &mut pipe,
                    &scripts::DEAD_LETTER,
                    &[&keys.stream, &keys.dead, &keys.dead_records, &keys.stats],
                    |c| {
                        c.arg(GROUP)
                            .arg(entry_id)
                            .arg(job_id)
                            .arg(record)
                            .arg(now)
                            .arg(retention.max_count)
                            .arg(oldest_kept);
                    },
                ),
                other => {
                    return Err(StorageError::Unsupported {
                        what: format!("settle a job as {:?}", other.kind()),
                    });
                }
            }
        }
        let delete = if options.delete_completed { "1" } else { "0" };
        for chunk in completed.chunks(BATCH) {
            script_cmd(&mut pipe, &scripts::COMPLETE, &[&keys.stream, &keys.stats], |c| {
                c.arg(GROUP).arg(delete).arg(chunk);
            });
        }
        self.exec_scripts(&pipe, "settling jobs").await
    }
}

/// `retry.lua` for a retry (a failure is counted) or a snooze (none is).
fn retry(
    pipe: &mut redis::Pipeline,
    keys: &QueueKeys,
    entry_id: &str,
    due_ms: u64,
    envelope: &str,
    failed: bool,
) {
    script_cmd(
        pipe,
        &scripts::RETRY,
        &[&keys.stream, &keys.retry, &keys.wake, &keys.stats],
        |c| {
            c.arg(GROUP)
                .arg(entry_id)
                .arg(due_ms)
                .arg(envelope)
                .arg(if failed { "1" } else { "0" });
        },
    );
}
