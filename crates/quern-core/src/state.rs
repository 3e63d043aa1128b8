//! Where jobs are: the states a job moves through, counts per queue, and what an admin lookup
//! of one job returns.

use serde::Serialize;

use crate::dead::DeadRecord;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting in the queue.
    Pending,
    /// Leased to a worker.
    Running,
    /// Delayed until its due time.
    Scheduled,
    /// Waiting for its next attempt.
    Retrying,
    /// In the dead set.
    Dead,
    /// Finished successfully (kept only while its completed entry is not yet trimmed).
    Completed,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Scheduled => "scheduled",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Completed => "completed",
        })
    }
}

/// Counts for one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Ready to run.
    pub pending: u64,
    /// Leased to a worker right now.
    pub running: u64,
    /// Delayed, not yet due.
    pub scheduled: u64,
    /// Waiting for their next attempt.
    pub retrying: u64,
    /// In the dead set.
    pub dead: u64,
    /// Completed since the queue was created.
    pub completed: u64,
    /// Jobs that did not succeed (then retried or dead-lettered) since the queue was created,
    /// counting those that could not start: an envelope or payload that cannot be decoded, or
    /// an unknown job type.
    pub failed: u64,
}

impl QueueStats {
    /// Empty counts for `queue`.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            ..Self::default()
        }
    }
}

/// The lease of a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The worker (consumer) holding it.
    pub worker: String,
    /// How long ago the lease was taken or last renewed, in ms.
    pub idle_ms: u64,
    /// How many times the job was delivered.
    pub deliveries: u64,
}

impl LeaseInfo {
    /// A lease held by `worker`, taken or renewed `idle_ms` ago, of a job delivered
    /// `deliveries` times.
    pub fn new(worker: impl Into<String>, idle_ms: u64, deliveries: u64) -> Self {
        Self {
            worker: worker.into(),
            idle_ms,
            deliveries,
        }
    }
}

/// One job, found by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Where it is.
    pub state: JobState,
    /// The stored envelope text, when the job is in the queue, delayed or retrying.
    pub envelope: Option<String>,
    /// When it is due (ms since the epoch), when scheduled or retrying.
    pub due_ms: Option<u64>,
    /// Its lease, when running.
    pub lease: Option<LeaseInfo>,
    /// Its dead record, when dead.
    pub dead: Option<DeadRecord>,
}

impl JobInfo {
    /// A job in `state`, with nothing else known yet.
    pub fn new(id: impl Into<String>, queue: impl Into<String>, state: JobState) -> Self {
        Self {
            id: id.into(),
            queue: queue.into(),
            state,
            envelope: None,
            due_ms: None,
            lease: None,
            dead: None,
        }
    }
}
