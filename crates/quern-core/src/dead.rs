//! What is kept about a dead job, and why it died.

use serde::{Deserialize, Serialize};

use crate::envelope::{DecodeError, Envelope, Failure};

/// Why a job was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeadReason {
    /// Its attempts were spent.
    MaxAttempts,
    /// It failed with a permanent (non-retryable) error.
    Permanent,
    /// Its payload or envelope could not be decoded; retrying cannot fix it.
    Undecodable,
    /// No job type of that name is registered with the worker.
    UnknownJob,
    /// Its outcome could not be written: the storage refused it with an error that retrying
    /// cannot fix (a key of the wrong type, a missing permission).
    SettleRefused,
}

impl DeadReason {
    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            DeadReason::MaxAttempts => "attempts exhausted",
            DeadReason::Permanent => "permanent failure",
            DeadReason::Undecodable => "undecodable payload",
            DeadReason::UnknownJob => "unknown job type",
            DeadReason::SettleRefused => "outcome refused by Redis",
        }
    }
}

/// A dead job: the job itself, kept losslessly, and why it died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadRecord {
    /// The job id (for an entry that was not an envelope at all: `<queue>/<entry id>`, see
    /// [`JobId::for_entry`](crate::JobId::for_entry)).
    pub id: String,
    /// The job name, when known.
    pub job: Option<String>,
    /// The queue it died on.
    pub queue: String,
    /// Why it died.
    pub reason: DeadReason,
    /// One line for humans: the reason and the last error.
    pub message: String,
    /// The attempt that was running.
    pub attempt: u32,
    /// When it died, ms since the Unix epoch.
    pub died_at: u64,
    /// The envelope text exactly as it was stored (when it was valid UTF-8).
    pub envelope: Option<String>,
    /// The stored bytes in hex, when they were not valid UTF-8.
    pub raw_hex: Option<String>,
    /// Where and why decoding failed.
    pub decode: Option<DecodeError>,
    /// Failed attempts, newest last, each with its error chain.
    pub failures: Vec<Failure>,
}

impl DeadRecord {
    /// A record, made at `died_at` (ms since the epoch), for the stored bytes `raw` of a job on
    /// `queue`; fill the rest with the setters.
    pub fn new(
        id: String,
        queue: &str,
        reason: DeadReason,
        message: String,
        raw: &[u8],
        died_at: u64,
    ) -> Self {
        let (envelope, raw_hex) = match std::str::from_utf8(raw) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (None, Some(raw.iter().map(|b| format!("{b:02x}")).collect())),
        };
        Self {
            id,
            job: None,
            queue: queue.to_owned(),
            reason,
            message,
            attempt: 0,
            died_at,
            envelope,
            raw_hex,
            decode: None,
            failures: Vec::new(),
        }
    }

    /// Fills job name, attempt and failure history from a decoded envelope.
    #[must_use]
    pub fn with_envelope(mut self, env: &Envelope<'_>, attempt: u32) -> Self {
        self.job = Some(env.job.clone());
        self.attempt = attempt;
        self.failures = env.failures.clone();
        self
    }

    /// Adds a failure to the history.
    #[must_use]
    pub fn with_failure(mut self, failure: Failure) -> Self {
        self.failures.push(failure);
        self
    }

    /// Records a decode diagnostic.
    #[must_use]
    pub fn with_decode(mut self, err: DecodeError) -> Self {
        self.decode = Some(err);
        self
    }

    /// The record as JSON.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a dead record always serializes")
    }
}
