//! From an attempt's outcome to how it is settled: asks the lifecycle model
//! ([`quern_core::lifecycle::decide`]) for the job's fate, then builds the settle op (the next
//! attempt's envelope, the dead record), counts it, emits its event and logs it — once, here,
//! where the fate is decided, with the whole error chain.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use quern_core::events::{Event, EventKind};
use quern_core::lifecycle::{Attempt, AttemptOutcome, Decision, Fate, Policy, decide};
use quern_core::{
    DeadReason, DeadRecord, DecodeError, Delivery, Envelope, FinishedRecord, JobId, JobState, Settle,
};
use serde_json::value::RawValue;

use crate::worker::Shared;

/// The job an outcome belongs to.
pub(crate) struct Job<'a> {
    pub queue: &'a Arc<str>,
    pub entry_id: String,
    pub id: JobId,
    /// Whether the storage keeps a lookup entry for it (it has an id of its own, or moved).
    pub indexed: bool,
    pub env: &'a Envelope<'a>,
    /// The stored envelope bytes, kept verbatim in a dead record.
    pub raw: &'a [u8],
    pub attempt: u32,
    pub policy: Policy,
    /// How long its status and result are kept once completed (`None`: not kept).
    pub keep_result: Option<Duration>,
}

/// How long a cancelled job's record is kept, so that its id says "cancelled" (and a caller's
/// id is not taken again) for a day.
pub(crate) const CANCELLED_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Decides and builds the settle op of `job`; `None` when the job is given back unsettled.
pub(crate) fn settle(shared: &Shared, job: Job<'_>, outcome: AttemptOutcome) -> Option<Settle> {
    settle_with(shared, job, outcome, None)
}

/// [`settle`], with the result the execution produced.
pub(crate) fn settle_with(
    shared: &Shared,
    job: Job<'_>,
    outcome: AttemptOutcome,
    result: Option<&RawValue>,
) -> Option<Settle> {
    // A success needs neither the time nor a jitter: reading the clock and drawing a number are
    // left to the outcomes that use them (the hot path is a success with nobody listening).
    let succeeded = matches!(outcome, AttemptOutcome::Succeeded);
    let now = if succeeded { 0 } else { shared.clock.now_ms() };
    let attempt = if succeeded {
        Attempt {
            number: job.attempt,
            now_ms: 0,
            jitter: 0.0,
        }
    } else {
        Attempt::new(job.attempt, now)
    };
    let decision = decide(&outcome, attempt, &job.policy);
    let (id, name, queue, attempt) = (&job.id, job.env.job.as_str(), job.queue, job.attempt);
    let clock = &shared.clock;
    let event = |kind| {
        move || {
            Event::new(
                kind,
                id.as_str(),
                name,
                &**queue,
                attempt,
                if now == 0 { clock.now_ms() } else { now },
            )
        }
    };
    let Decision { fate, failure } = decision;
    let chain = failure.as_ref().map(|f| f.chain.join(": caused by: "));
    let chain = chain.as_deref().unwrap_or("");
    let kind = failure.as_ref().map_or("", |f| f.kind.as_str());
    match fate {
        Fate::Complete => {
            shared.counters.succeeded.fetch_add(1, Relaxed);
            shared.events.emit(event(EventKind::Succeeded));
            match job.keep_result {
                None => Some(Settle::Complete {
                    entry_id: job.entry_id,
                    job_id: job.indexed.then(|| job.id.to_string()),
                }),
                Some(keep) => Some(finish(shared, job, JobState::Completed, result, keep)),
            }
        }
        Fate::Retry { at_ms } => {
            shared.counters.failed.fetch_add(1, Relaxed);
            let retry_in_ms = at_ms.saturating_sub(now);
            let attempts_left = job.policy.max_attempts.saturating_sub(job.attempt);
            match backtrace(&outcome) {
                None => {
                    tracing::warn!(failure = kind, error.chain = %chain, retry_in_ms, attempts_left, "job failed; will retry")
                }
                Some(bt) => {
                    tracing::warn!(failure = kind, error.chain = %chain, retry_in_ms, attempts_left, backtrace = %bt, "job failed; will retry")
                }
            }
            let mut next = job.env.next_attempt(failure.expect("a retry follows a failure"));
            next.id = job.id.clone();
            next.enqueued_at
                .get_or_insert(crate::worker::entry_ms(&job.entry_id));
            shared.events.emit(event(EventKind::Retried { at_ms }));
            Some(Settle::Retry {
                entry_id: job.entry_id,
                job_id: job.id.to_string(),
                due_ms: at_ms,
                envelope: next.encode(),
            })
        }
        Fate::Snooze { until_ms } => {
            tracing::info!(snooze_ms = until_ms.saturating_sub(now), "job snoozed");
            let mut same = job.env.clone();
            same.id = job.id.clone();
            same.enqueued_at
                .get_or_insert(crate::worker::entry_ms(&job.entry_id));
            shared.events.emit(event(EventKind::Snoozed { until_ms }));
            Some(Settle::Snooze {
                entry_id: job.entry_id,
                job_id: job.id.to_string(),
                due_ms: until_ms,
                envelope: same.encode(),
            })
        }
        Fate::Dead { reason } => {
            if matches!(
                outcome,
                AttemptOutcome::Failed { .. }
                    | AttemptOutcome::Panicked { .. }
                    | AttemptOutcome::TimedOut { .. }
            ) {
                shared.counters.failed.fetch_add(1, Relaxed);
            }
            match (&outcome, backtrace(&outcome)) {
                (AttemptOutcome::Undecodable(err), _) => tracing::error!(payload.size = err.size,
                    decode.kind = ?err.kind, decode.path = err.path.as_deref().unwrap_or(""), decode.line = err.line,
                    decode.column = err.column, decode.offset = err.offset, decode.window = %err.window,
                    error = %err, "job payload cannot be decoded; dead-lettered (retrying cannot fix it)"),
                (_, None) => {
                    tracing::error!(failure = kind, error.chain = %chain, reason = reason.describe(), "job failed; dead-lettered")
                }
                (_, Some(bt)) => {
                    tracing::error!(failure = kind, error.chain = %chain, reason = reason.describe(), backtrace = %bt, "job failed; dead-lettered")
                }
            }
            let message = match &outcome {
                AttemptOutcome::Undecodable(err) => format!("payload cannot be decoded: {err}"),
                AttemptOutcome::UnknownJob { known } => {
                    format!("unknown job type {:?}: this worker knows {known:?}", job.env.job)
                }
                _ if reason == DeadReason::MaxAttempts => {
                    format!("attempts exhausted ({}): {chain}", job.policy.max_attempts)
                }
                _ => format!("{}: {chain}", reason.describe()),
            };
            let mut record = DeadRecord::new(job.id.to_string(), job.queue, reason, message, job.raw, now)
                .with_envelope(job.env, job.attempt);
            if let AttemptOutcome::Undecodable(err) = outcome {
                record = record.with_decode(err);
            } else if let Some(f) = failure {
                record = record.with_failure(f);
            }
            shared.events.emit(event(EventKind::Dead { reason }));
            Some(dead(shared, job.entry_id, job.id.to_string(), record))
        }
        Fate::Cancelled => {
            tracing::info!("job cancelled; it will not run again");
            shared.counters.cancelled.fetch_add(1, Relaxed);
            shared.events.emit(event(EventKind::Cancelled));
            let keep = job.keep_result.map_or(CANCELLED_KEPT, |k| k.max(CANCELLED_KEPT));
            Some(finish(shared, job, JobState::Cancelled, None, keep))
        }
        Fate::GiveBack => {
            tracing::info!("stopped by shutdown; the job goes back to its queue");
            shared.events.emit(event(EventKind::GivenBack));
            None
        }
        _ => {
            tracing::error!(?fate, "a fate this worker does not know; the job is given back");
            None
        }
    }
}

/// The settle op of a job that ended `state` and whose record is kept for `keep`.
fn finish(
    shared: &Shared,
    job: Job<'_>,
    state: JobState,
    result: Option<&RawValue>,
    keep: Duration,
) -> Settle {
    let now = shared.clock.now_ms();
    let mut record = FinishedRecord::new(job.id.as_str(), &job.env.job, &**job.queue, state, now);
    record.attempt = job.attempt;
    record.enqueued_at = job
        .env
        .enqueued_at
        .unwrap_or_else(|| crate::worker::entry_ms(&job.entry_id));
    record.result = result.map(|r| r.get().to_owned());
    record.last_error = job.env.failures.last().cloned();
    Settle::Finish {
        entry_id: job.entry_id,
        job_id: job.id.to_string(),
        cancelled: state == JobState::Cancelled,
        record: record.encode(),
        keep_ms: u64::try_from(keep.as_millis()).unwrap_or(u64::MAX).max(1),
    }
}

/// The backtrace of a failed attempt as `QUERN_BACKTRACE` wants it logged: none (the default),
/// trimmed to the job's frames, or whole.
fn backtrace(outcome: &AttemptOutcome) -> Option<String> {
    let setting = quern_core::BacktraceSetting::current();
    outcome.backtrace().and_then(|bt| setting.render(&bt))
}

/// A stored entry that is not an envelope at all: kept verbatim in the dead set.
pub(crate) fn undecodable_envelope(
    shared: &Shared,
    queue: &Arc<str>,
    entry_id: String,
    d: &Delivery,
    err: DecodeError,
) -> Settle {
    // Best effort: the id and name, when they can be read from the broken text.
    let text = String::from_utf8_lossy(&d.envelope);
    let id = sniff(&text, "id")
        .or_else(|| d.job_id.clone())
        .unwrap_or_else(|| JobId::for_entry(queue, &entry_id).to_string());
    tracing::error!(job.id = %id, job.queue = &**queue, size = d.envelope.len(), error = %err,
        decode.kind = ?err.kind, decode.line = err.line, decode.column = err.column, decode.offset = err.offset,
        decode.window = %err.window, "job envelope cannot be decoded; dead-lettered");
    let raw = d.foreign_fields.as_deref().map_or(&d.envelope[..], str::as_bytes);
    let now = shared.clock.now_ms();
    let mut record = DeadRecord::new(
        id.clone(),
        queue,
        DeadReason::Undecodable,
        format!("envelope cannot be decoded: {err}"),
        raw,
        now,
    )
    .with_decode(err);
    record.job = sniff(&text, "job");
    shared.events.emit(|| {
        Event::new(
            EventKind::Dead {
                reason: DeadReason::Undecodable,
            },
            id.as_str(),
            record.job.as_deref().unwrap_or(""),
            &**queue,
            0,
            now,
        )
    });
    dead(shared, entry_id, id, record)
}

/// The string value of `"key":"…"` in text that is not valid JSON as a whole.
fn sniff(text: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let len = text[start..].find('"')?;
    let value = &text[start..start + len];
    (!value.is_empty() && value.len() <= 200 && !value.contains('\\')).then(|| value.to_owned())
}

fn dead(shared: &Shared, entry_id: String, job_id: String, record: DeadRecord) -> Settle {
    shared.counters.dead.fetch_add(1, Relaxed);
    Settle::Dead {
        entry_id,
        job_id,
        record: record.encode(),
    }
}
