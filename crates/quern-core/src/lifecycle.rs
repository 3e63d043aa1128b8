//! A job's fate after an attempt, decided in one place.
//!
//! The executor (and any middleware around it) reports how an attempt ended as an
//! [`AttemptOutcome`]; [`decide`] turns that, the attempt's number and the job type's
//! [`Policy`] into a [`Decision`]: complete, retry at T, snooze until T (no attempt spent), dead
//! with a reason, cancelled, or given back unchanged. It reads no clock and draws no random
//! number (both come in through [`Attempt`]), so every outcome x policy is a plain unit test.
//! [`after_settle_error`] decides what happens to a job whose outcome the storage refused.

use std::time::Duration;

use crate::dead::DeadReason;
use crate::envelope::{DecodeError, Failure};
use crate::error::JobError;
use crate::retry::Backoff;

/// Where in an execution a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Acquiring the job's declared resources (a database pool, say).
    Acquire,
    /// The job's own `run`.
    Run,
    /// Setting up the execution's isolation (its thread or runtime).
    Isolation,
}

/// What failed, as stored in each [`Failure`]'s `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The job returned an error.
    Error,
    /// The job panicked.
    Panic,
    /// The job ran past its timeout.
    Timeout,
    /// Its worker went away (killed, or lost Redis) before finishing: the lease expired.
    Lost,
    /// The envelope or payload could not be decoded.
    Decode,
    /// No job type of its name is registered.
    UnknownJob,
    /// Its resources could not be acquired.
    Resource,
    /// Its thread or runtime could not be set up.
    Isolation,
    /// Its outcome could not be written to the storage.
    Settle,
}

impl FailureKind {
    /// The name stored in [`Failure::kind`].
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::Lost => "lost",
            FailureKind::Decode => "decode",
            FailureKind::UnknownJob => "unknown_job",
            FailureKind::Resource => "resource",
            FailureKind::Isolation => "isolation",
            FailureKind::Settle => "settle",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt ended, as the executor and middleware report it.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// `run` returned `Ok`.
    Succeeded,
    /// A stage returned an error.
    Failed {
        /// Which stage.
        stage: Stage,
        /// The error, with its whole chain and whether to retry.
        error: JobError,
    },
    /// `run` panicked.
    Panicked {
        /// The panic message with its location.
        message: String,
        /// A backtrace, when Quern's backtraces are enabled (`QUERN_BACKTRACE=1`).
        backtrace: Option<String>,
    },
    /// `run` ran past the job's timeout and was stopped.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The job asked to run again later; this attempt does not count.
    Snoozed {
        /// How much later.
        delay: Duration,
    },
    /// The job was cancelled: it ends here and is never retried.
    Cancelled,
    /// The worker stopped the attempt while shutting down: the job goes back unchanged.
    Interrupted,
    /// The envelope or payload could not be decoded; no attempt can fix that.
    Undecodable(DecodeError),
    /// No job type of this name is registered with the worker.
    UnknownJob {
        /// The names the worker knows.
        known: Vec<String>,
    },
    /// The job's lease expired this many times (its workers died) and its attempts are spent.
    Lost {
        /// Lease expiries recorded on the job.
        expiries: u32,
    },
}

impl AttemptOutcome {
    /// A short name for logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::Panicked { .. } => "panicked",
            AttemptOutcome::TimedOut { .. } => "timed_out",
            AttemptOutcome::Snoozed { .. } => "snoozed",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Interrupted => "interrupted",
            AttemptOutcome::Undecodable(_) => "undecodable",
            AttemptOutcome::UnknownJob { .. } => "unknown_job",
            AttemptOutcome::Lost { .. } => "lost",
        }
    }

    /// The backtrace captured with the failure, if any.
    pub fn backtrace(&self) -> Option<String> {
        match self {
            AttemptOutcome::Failed { error, .. } => error.backtrace().map(ToString::to_string),
            AttemptOutcome::Panicked { backtrace, .. } => backtrace.clone(),
            _ => None,
        }
    }
}

/// A job type's retry policy, as the lifecycle needs it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Total executions allowed, the first one included.
    pub max_attempts: u32,
    /// Wait before the next attempt.
    pub backoff: Backoff,
}

/// The attempt being decided on.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// 1 for the first execution.
    pub number: u32,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// A number in `[0, 1)` that spreads the backoff (jitter).
    pub jitter: f64,
}

impl Attempt {
    /// Attempt `number` at `now_ms`, with a random jitter.
    pub fn new(number: u32, now_ms: u64) -> Self {
        Self {
            number,
            now_ms,
            jitter: rand::random::<f64>(),
        }
    }
}

/// What becomes of a job after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Done.
    Complete,
    /// Run again at `at_ms` (ms since the epoch); the next attempt has the next number.
    Retry {
        /// When.
        at_ms: u64,
    },
    /// Run again at `until_ms`, with the same attempt number.
    Snooze {
        /// When.
        until_ms: u64,
    },
    /// Kept in the dead set.
    Dead {
        /// Why.
        reason: DeadReason,
    },
    /// Ended as cancelled; never retried.
    Cancelled,
    /// Back to its queue unchanged (shutdown); another worker runs it.
    GiveBack,
}

/// A [`Fate`] and, for a failed attempt, the failure to record with the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What becomes of the job.
    pub fate: Fate,
    /// The failure to record (its kind and error chain), if the attempt failed.
    pub failure: Option<Failure>,
}

/// Decides a job's fate from how its attempt ended and its policy.
///
/// ```
/// use std::time::Duration;
/// use quern_core::lifecycle::{decide, Attempt, AttemptOutcome, Fate, Policy};
/// use quern_core::{Backoff, JobError};
///
/// let policy = Policy { max_attempts: 3, backoff: Backoff::Fixed(Duration::from_secs(5)) };
/// let failed = AttemptOutcome::Failed { stage: quern_core::lifecycle::Stage::Run, error: JobError::msg("smtp down") };
/// let d = decide(&failed, Attempt { number: 1, now_ms: 1_000, jitter: 0.0 }, &policy);
/// assert_eq!(d.fate, Fate::Retry { at_ms: 6_000 });
/// let d = decide(&failed, Attempt { number: 3, now_ms: 1_000, jitter: 0.0 }, &policy);
/// assert!(matches!(d.fate, Fate::Dead { .. }));
/// ```
pub fn decide(outcome: &AttemptOutcome, attempt: Attempt, policy: &Policy) -> Decision {
    let failure = |kind: FailureKind, chain: Vec<String>| Failure {
        attempt: attempt.number,
        at: attempt.now_ms,
        kind: kind.as_str().to_owned(),
        chain,
    };
    let (kind, chain, retryable) = match outcome {
        AttemptOutcome::Succeeded => return plain(Fate::Complete),
        AttemptOutcome::Snoozed { delay } => {
            return plain(Fate::Snooze {
                until_ms: attempt.now_ms.saturating_add(delay.as_millis() as u64),
            });
        }
        AttemptOutcome::Cancelled => return plain(Fate::Cancelled),
        AttemptOutcome::Interrupted => return plain(Fate::GiveBack),
        AttemptOutcome::Undecodable(err) => {
            return Decision {
                fate: Fate::Dead {
                    reason: DeadReason::Undecodable,
                },
                failure: Some(failure(FailureKind::Decode, vec![err.to_string()])),
            };
        }
        AttemptOutcome::UnknownJob { known } => {
            return Decision {
                fate: Fate::Dead {
                    reason: DeadReason::UnknownJob,
                },
                failure: Some(failure(
                    FailureKind::UnknownJob,
                    vec![format!(
                        "no job of this name is registered; this worker knows {known:?}"
                    )],
                )),
            };
        }
        AttemptOutcome::Lost { expiries } => {
            // The attempt that was lost is the one before this delivery.
            let mut f = failure(
                FailureKind::Lost,
                vec![format!(
                    "the job's lease expired {expiries} time(s): its worker stopped (killed, or lost Redis) before finishing"
                )],
            );
            f.attempt = attempt.number.saturating_sub(1);
            return Decision {
                fate: Fate::Dead {
                    reason: DeadReason::MaxAttempts,
                },
                failure: Some(f),
            };
        }
        AttemptOutcome::Failed { stage, error } => {
            let kind = match stage {
                Stage::Run => FailureKind::Error,
                Stage::Acquire => FailureKind::Resource,
                Stage::Isolation => FailureKind::Isolation,
            };
            let mut chain = error.chain().0;
            match stage {
                Stage::Run => {}
                Stage::Acquire => chain.insert(0, "acquiring the job's resources".to_owned()),
                Stage::Isolation => chain.insert(0, "setting up the execution's isolation".to_owned()),
            }
            (kind, chain, error.is_retryable())
        }
        AttemptOutcome::Panicked { message, .. } => {
            (FailureKind::Panic, vec![format!("panicked: {message}")], true)
        }
        AttemptOutcome::TimedOut { after } => (
            FailureKind::Timeout,
            vec![format!("timed out after {} ms", after.as_millis())],
            true,
        ),
    };
    let fate = if !retryable {
        Fate::Dead {
            reason: DeadReason::Permanent,
        }
    } else if attempt.number >= policy.max_attempts {
        Fate::Dead {
            reason: DeadReason::MaxAttempts,
        }
    } else {
        let delay = policy.backoff.delay_with(attempt.number, attempt.jitter);
        Fate::Retry {
            at_ms: attempt.now_ms.saturating_add(delay.as_millis() as u64),
        }
    };
    Decision {
        fate,
        failure: Some(failure(kind, chain)),
    }
}

fn plain(fate: Fate) -> Decision {
    Decision { fate, failure: None }
}

/// Whether a delivery whose lease expired `expiries` times may still run as attempt `attempt`.
pub fn lost_too_often(attempt: u32, max_attempts: u32, expiries: u32) -> bool {
    expiries > 0 && attempt > max_attempts
}

/// The kind of write that settles a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettleKind {
    /// Acknowledge a completed job.
    Complete,
    /// Schedule the next attempt.
    Retry,
    /// Schedule the same attempt later.
    Snooze,
    /// Move to the dead set.
    Dead,
}

/// What to do with a job whose settle write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterSettleError {
    /// Write it again later (the storage is unreachable or busy).
    TryAgain,
    /// The storage refused this write: dead-letter the job instead, with
    /// [`DeadReason::SettleRefused`].
    DeadLetter,
    /// Nothing more can be written for it: log it, stop renewing its lease, and let the lease
    /// expire (the job runs again, or ends dead once its attempts are spent). Never blocks the
    /// jobs behind it.
    Surface,
}

/// Decides what happens to a job whose outcome (`kind`) the storage did not take.
///
/// A retryable error (connection lost, timeout) is written again. A refused write of a retry
/// or snooze dead-letters the job, so it is kept and visible; a refused dead-letter or
/// acknowledgement is surfaced (a completed job is not dead-lettered: retrying it from the dead
/// set would run it twice).
pub fn after_settle_error(kind: SettleKind, retryable: bool) -> AfterSettleError {
    match (retryable, kind) {
        (true, _) => AfterSettleError::TryAgain,
        (false, SettleKind::Retry | SettleKind::Snooze) => AfterSettleError::DeadLetter,
        (false, _) => AfterSettleError::Surface,
    }
}

#[cfg(test)]
mod tests;
