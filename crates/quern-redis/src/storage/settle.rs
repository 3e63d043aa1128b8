//! Settling finished executions: completed, retried, snoozed or dead-lettered.
//!
//! Every write here is safe to send again after a timeout: each script first acknowledges the
//! running copy (`XACK`) and writes nothing when it was no longer leased, so a replayed batch
//! changes nothing, counters included.

use std::borrow::Cow;

use quern_core::envelope::decode_envelope;
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
        let mut completed: Vec<(&str, Option<&str>)> = Vec::new();
        let mut finished: Vec<&Settle> = Vec::new();
        let now = self.clock.now_ms();
        let retention = options.retention;
        let oldest_kept =
            now.saturating_sub(u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX));
        for op in ops {
            match op {
                Settle::Complete { entry_id, job_id } => completed.push((entry_id, job_id.as_deref())),
                Settle::Retry {
                    entry_id,
                    job_id,
                    due_ms,
                    envelope,
                } => retry(&mut pipe, keys, entry_id, job_id, *due_ms, envelope, true),
                Settle::Snooze {
                    entry_id,
                    job_id,
                    due_ms,
                    envelope,
                } => retry(&mut pipe, keys, entry_id, job_id, *due_ms, envelope, false),
                Settle::Dead {
                    entry_id,
                    job_id,
                    record,
                } => script_cmd(
                    &mut pipe,
                    &scripts::DEAD_LETTER,
                    &[
                        &keys.stream,
                        &keys.dead,
                        &keys.dead_records,
                        &keys.stats,
                        &keys.jobs,
                    ],
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
                Settle::Finish { .. } => finished.push(op),
                other => {
                    return Err(StorageError::Unsupported {
                        what: format!("settle a job as {:?}", other.kind()),
                    });
                }
            }
        }
        let delete = if options.delete_completed { "1" } else { "0" };
        for chunk in completed.chunks(BATCH) {
            let plain: Vec<&str> = chunk
                .iter()
                .filter(|(_, job)| job.is_none())
                .map(|(entry, _)| *entry)
                .collect();
            script_cmd(
                &mut pipe,
                &scripts::COMPLETE,
                &[&keys.stream, &keys.stats, &keys.jobs],
                |c| {
                    c.arg(GROUP).arg(delete).arg(plain.len()).arg(&plain);
                    for (entry, job) in chunk {
                        if let Some(job) = job {
                            c.arg(*entry).arg(*job);
                        }
                    }
                },
            );
        }
        for chunk in finished.chunks(BATCH) {
            let mut job_keys = vec![keys.stream.clone(), keys.stats.clone(), keys.jobs.clone()];
            for op in chunk {
                if let Settle::Finish { job_id, .. } = op {
                    job_keys.push(keys.done(job_id));
                    job_keys.push(keys.cancel(job_id));
                }
            }
            let refs: Vec<&str> = job_keys.iter().map(String::as_str).collect();
            script_cmd(&mut pipe, &scripts::FINISH, &refs, |c| {
                c.arg(GROUP).arg(delete);
                for op in chunk {
                    if let Settle::Finish {
                        entry_id,
                        job_id,
                        cancelled,
                        record,
                        keep_ms,
                    } = op
                    {
                        c.arg(entry_id)
                            .arg(job_id)
                            .arg(record)
                            .arg(*keep_ms)
                            .arg(if *cancelled { "1" } else { "0" });
                    }
                }
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
    job_id: &str,
    due_ms: u64,
    envelope: &str,
    failed: bool,
) {
    script_cmd(
        pipe,
        &scripts::RETRY,
        &[&keys.stream, &keys.retry, &keys.wake, &keys.stats, &keys.jobs],
        |c| {
            c.arg(GROUP)
                .arg(entry_id)
                .arg(due_ms)
                .arg(&*carrying_id(envelope, job_id))
                .arg(if failed { "1" } else { "0" })
                .arg(job_id);
        },
    );
}

/// `envelope` with `job_id` written in when it carries no id of its own: a job leaving the
/// stream keeps its id (`<queue>/<entry id>` for a job enqueued without one), so that once
/// promoted it is still found, and indexed, by that id. The bytes are kept as they were, the id
/// put first; an envelope that already has an id, or cannot be decoded, is left alone.
pub(crate) fn carrying_id<'a>(envelope: &'a str, job_id: &str) -> Cow<'a, str> {
    if envelope.starts_with("{\"id\":") || job_id.is_empty() {
        return Cow::Borrowed(envelope);
    }
    match decode_envelope(envelope.as_bytes()) {
        Ok(env) if env.id.is_unset() => {
            let body = envelope.trim_start();
            let Some(rest) = body.strip_prefix('{') else {
                return Cow::Borrowed(envelope);
            };
            let id = serde_json::to_string(job_id).expect("a string always serializes");
            Cow::Owned(format!("{{\"id\":{id},{rest}"))
        }
        _ => Cow::Borrowed(envelope),
    }
}

#[cfg(test)]
mod tests {
    use super::carrying_id;

    #[test]
    fn an_envelope_without_an_id_gets_the_job_id_first_and_keeps_its_bytes() {
        let plain = r#"{"job":"a","attempt":2,"payload":{"id":7, "x":"y"}}"#;
        let with = carrying_id(plain, "emails/1-0");
        assert_eq!(
            with,
            r#"{"id":"emails/1-0","job":"a","attempt":2,"payload":{"id":7, "x":"y"}}"#
        );
        let env = quern_core::envelope::decode_envelope(with.as_bytes()).unwrap();
        assert_eq!((env.id.as_str(), env.attempt), ("emails/1-0", 2));

        let own = r#"{"job":"a","id":"mine","payload":{}}"#;
        assert_eq!(carrying_id(own, "emails/1-0"), own, "its own id stays");
        assert_eq!(carrying_id("not json", "emails/1-0"), "not json");
        let first = r#"{"id":"x","job":"a","payload":{}}"#;
        assert!(matches!(carrying_id(first, "y"), std::borrow::Cow::Borrowed(_)));
    }
}
