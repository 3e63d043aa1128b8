//! Settling a finished execution: acknowledged, retried or dead-lettered.

use std::time::Duration;

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys};
use crate::scripts;

use super::{Storage, script_cmd};

/// How a finished execution is settled.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Done: remove it.
    Ack {
        /// Stream entry id.
        entry_id: String,
    },
    /// Failed: run again at `due_ms`.
    Retry {
        /// Stream entry id.
        entry_id: String,
        /// Due time, ms since the Unix epoch.
        due_ms: u64,
        /// Envelope of the next attempt.
        envelope: String,
    },
    /// Cannot or may not run again: keep it in the dead set.
    Dead {
        /// Stream entry id.
        entry_id: String,
        /// The job id.
        job_id: String,
        /// The dead record JSON.
        record: String,
    },
}

impl Settle {
    /// The stream entry this settles.
    pub fn entry_id(&self) -> &str {
        match self {
            Settle::Ack { entry_id } | Settle::Retry { entry_id, .. } | Settle::Dead { entry_id, .. } => {
                entry_id
            }
        }
    }
}

/// Dead-letter retention.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DeadRetention {
    /// The most dead jobs kept per queue (default 10,000).
    pub max_count: u64,
    /// The oldest dead job kept (default 30 days).
    pub max_age: Duration,
}

impl Default for DeadRetention {
    fn default() -> Self {
        Self {
            max_count: 10_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Storage {
    /// Settles finished executions in one round trip.
    ///
    /// Completed jobs are acknowledged; their entries are deleted now only when `delete_acked` is
    /// set, and otherwise left to [`trim_acked`](Self::trim_acked), which removes them in blocks
    /// for less work in Redis. The worker deletes them at once while a long-leased entry holds
    /// trimming back.
    pub async fn settle(
        &self,
        keys: &QueueKeys,
        ops: &[Settle],
        retention: DeadRetention,
        delete_acked: bool,
    ) -> Result<(), StorageError> {
        let mut pipe = redis::pipe();
        let mut acked: Vec<&str> = Vec::new();
        let now = quern_core::envelope::now_ms();
        for op in ops {
            match op {
                Settle::Ack { entry_id } => acked.push(entry_id),
                Settle::Retry {
                    entry_id,
                    due_ms,
                    envelope,
                } => script_cmd(
                    &mut pipe,
                    &scripts::RETRY,
                    &[&keys.stream, &keys.retry, &keys.wake, &keys.stats],
                    |c| {
                        c.arg(GROUP).arg(entry_id).arg(due_ms).arg(envelope);
                    },
                ),
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
                            .arg(now.saturating_sub(retention.max_age.as_millis() as u64));
                    },
                ),
            }
        }
        if !acked.is_empty() {
            pipe.cmd("XACK").arg(&keys.stream).arg(GROUP).arg(&acked).ignore();
            if delete_acked {
                pipe.cmd("XDEL").arg(&keys.stream).arg(&acked).ignore();
            }
            pipe.cmd("HINCRBY")
                .arg(&keys.stats)
                .arg("completed")
                .arg(acked.len())
                .ignore();
        }
        self.exec_scripts(&pipe, "settling jobs").await
    }
}
