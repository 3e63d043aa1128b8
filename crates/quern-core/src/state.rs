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
    /// Finished successfully: known while its status record is kept
    /// ([`JobOptions::keep_result`](crate::JobOptions::keep_result)), or while its completed
    /// stream entry is not yet trimmed.
    Completed,
    /// Cancelled before or while it ran; it never runs again.
    Cancelled,
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
            JobState::Cancelled => "cancelled",
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
    /// Cancelled since the queue was created.
    pub cancelled: u64,
    /// Whether the queue is paused: jobs keep arriving and wait, no worker claims them.
    pub paused: bool,
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
    /// The stream entry it is stored as, when it is in the stream (pending, running, or
    /// completed and not yet trimmed).
    pub entry: Option<String>,
    /// When it is due (ms since the epoch), when scheduled or retrying.
    pub due_ms: Option<u64>,
    /// Its lease, when running.
    pub lease: Option<LeaseInfo>,
    /// Its dead record, when dead.
    pub dead: Option<DeadRecord>,
    /// Its status record, when completed or cancelled and still kept.
    pub finished: Option<FinishedRecord>,
}

impl JobInfo {
    /// A job in `state`, with nothing else known yet.
    pub fn new(id: impl Into<String>, queue: impl Into<String>, state: JobState) -> Self {
        Self {
            id: id.into(),
            queue: queue.into(),
            state,
            envelope: None,
            entry: None,
            due_ms: None,
            lease: None,
            dead: None,
            finished: None,
        }
    }
}

/// What is kept about a job that completed (when its type keeps results) or was cancelled:
/// stored as JSON under the job's id, for a while (`docs/wire-format.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct FinishedRecord {
    /// The job id.
    pub id: String,
    /// The job's registered name.
    pub job: String,
    /// Its queue.
    pub queue: String,
    /// `completed` or `cancelled`.
    pub state: String,
    /// The attempt that finished it (1 for the first execution); 0 when it was cancelled
    /// before it ever ran.
    pub attempt: u32,
    /// When it was first enqueued, ms since the epoch (0 when unknown).
    #[serde(default)]
    pub enqueued_at: u64,
    /// When it finished, ms since the epoch.
    pub finished_at: u64,
    /// The result it produced, as JSON text ([`JobContext::set_result`](crate::JobContext::set_result)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The last failed attempt before it finished, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<crate::envelope::Failure>,
}

impl FinishedRecord {
    /// A record of job `id` (`job`, in `queue`) that ended in `state` at `finished_at`.
    pub fn new(
        id: impl Into<String>,
        job: impl Into<String>,
        queue: impl Into<String>,
        state: JobState,
        finished_at: u64,
    ) -> Self {
        Self {
            id: id.into(),
            job: job.into(),
            queue: queue.into(),
            state: state.to_string(),
            attempt: 0,
            enqueued_at: 0,
            finished_at,
            result: None,
            last_error: None,
        }
    }

    /// The JSON text stored.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a finished record always serializes")
    }

    /// The result, decoded into `T`.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.result.as_deref().map(serde_json::from_str)
    }
}
