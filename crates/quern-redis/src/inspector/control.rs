//! Admin actions on live jobs and queues: cancel a job, pause and resume a queue.

use quern_core::envelope::decode_envelope;
use quern_core::{FinishedRecord, JobInfo, JobState};

use crate::error::StorageError;
use crate::storage::{CancelAt, CancelDone};

use super::Inspector;

/// How long a cancelled job's record is kept: its id says "cancelled" for a day.
pub const CANCELLED_KEPT_MS: u64 = 24 * 3600 * 1000;

/// What [`Inspector::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// It was queued, delayed or waiting for a retry (`was`): removed, it will never run.
    Removed {
        /// Where it was.
        was: JobState,
        /// Its queue.
        queue: String,
    },
    /// It is running: its worker fires its cancellation signal within its control poll (1 s by
    /// default), the job gets the worker's cancel grace period to stop, and it ends as
    /// cancelled, never retried.
    Requested {
        /// Its queue.
        queue: String,
    },
    /// It had already finished (`state`: completed, cancelled or dead); nothing changed.
    AlreadyFinished {
        /// How it ended.
        state: JobState,
    },
    /// No job of this id is known; nothing changed.
    NotFound,
}

/// What [`Inspector::pause`] and [`Inspector::resume`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Paused {
    /// The queue's state changed.
    Changed,
    /// It already was in that state; nothing changed.
    Already,
}

impl Inspector {
    /// Cancels job `id` (of `queue`, or of any queue when `None`). A queued, delayed or retrying
    /// job is removed and never runs; a running one is asked to stop (see
    /// [`Cancelled::Requested`]). Either way its id then reads as cancelled for a day.
    pub async fn cancel(&self, id: &str, queue: Option<&str>) -> Result<Cancelled, StorageError> {
        // The job may move between finding it and cancelling it (promoted, claimed, retried):
        // the script checks it is still there, and a moved job is looked up again.
        for _ in 0..5 {
            let Some(info) = self.find_job(id, queue).await? else {
                return Ok(Cancelled::NotFound);
            };
            let keys = self.storage.keys(&info.queue);
            let envelope = info.envelope.as_deref().unwrap_or("");
            let at = match info.state {
                JobState::Pending | JobState::Running => match entry_of_info(&info) {
                    Some(entry) => CancelAt::Entry(entry),
                    None => return Err(not_locatable(id)),
                },
                JobState::Scheduled => CancelAt::Scheduled(envelope),
                JobState::Retrying => CancelAt::Retrying(envelope),
                state => return Ok(Cancelled::AlreadyFinished { state }),
            };
            let record = cancelled_record(&info, self.storage.clock().now_ms());
            match self
                .storage
                .cancel(&keys, id, at, &record.encode(), CANCELLED_KEPT_MS)
                .await?
            {
                CancelDone::Removed => {
                    return Ok(Cancelled::Removed {
                        was: info.state,
                        queue: info.queue,
                    });
                }
                CancelDone::Requested => return Ok(Cancelled::Requested { queue: info.queue }),
                CancelDone::Finished => {
                    return Ok(Cancelled::AlreadyFinished {
                        state: JobState::Completed,
                    });
                }
                _ => continue,
            }
        }
        Err(StorageError::Protocol {
            context: "cancelling a job",
            detail: format!("job {id:?} kept moving while it was being cancelled; try again"),
        })
    }

    /// Pauses `queue`: workers claim nothing from it (within their control poll, 1 s by default)
    /// until it is resumed; jobs keep arriving and wait. An unknown queue is an error.
    pub async fn pause(&self, queue: &str) -> Result<Paused, StorageError> {
        let keys = self.known(queue).await?;
        Ok(if self.storage.set_paused(&keys, true).await? {
            Paused::Changed
        } else {
            Paused::Already
        })
    }

    /// Resumes a paused `queue`. An unknown queue is an error.
    pub async fn resume(&self, queue: &str) -> Result<Paused, StorageError> {
        let keys = self.known(queue).await?;
        Ok(if self.storage.set_paused(&keys, false).await? {
            Paused::Changed
        } else {
            Paused::Already
        })
    }

    /// The keys of `queue` when it is a known queue.
    async fn known(&self, queue: &str) -> Result<crate::QueueKeys, StorageError> {
        let keys = self.keys(queue)?;
        let known = self.storage.queues().await?;
        if !known.iter().any(|q| q == queue) {
            return Err(StorageError::UnknownQueue {
                queue: queue.to_owned(),
                known,
            });
        }
        Ok(keys)
    }
}

/// The stream entry a found pending or running job is stored as.
fn entry_of_info(info: &JobInfo) -> Option<&str> {
    info.entry.as_deref()
}

fn not_locatable(id: &str) -> StorageError {
    StorageError::Protocol {
        context: "cancelling a job",
        detail: format!("job {id:?} was found in its queue's stream without its entry id"),
    }
}

/// The record of a job cancelled before it finished.
fn cancelled_record(info: &JobInfo, now_ms: u64) -> FinishedRecord {
    let env = info
        .envelope
        .as_deref()
        .and_then(|e| decode_envelope(e.as_bytes()).ok());
    let mut record = FinishedRecord::new(
        info.id.as_str(),
        env.as_ref().map_or("", |e| e.job.as_str()),
        info.queue.as_str(),
        JobState::Cancelled,
        now_ms,
    );
    if let Some(env) = &env {
        record.attempt = if info.state == JobState::Running {
            env.attempt
        } else {
            0
        };
        record.enqueued_at = env.enqueued_at.unwrap_or(0);
        record.last_error = env.failures.last().cloned();
    }
    record
}
