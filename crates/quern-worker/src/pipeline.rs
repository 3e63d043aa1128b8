//! One delivery, start to end: decode it, prepare its execution, run it through the middleware,
//! and hand the outcome to [`fate`](crate::fate), which decides (with the lifecycle model) how
//! it is settled.

use std::sync::Arc;

use quern_core::envelope::{check_size, decode_envelope};
use quern_core::events::{Event, EventKind};
use quern_core::lifecycle::{AttemptOutcome, Policy, lost_too_often};
use quern_core::{DecodeError, Delivery, JobContext, JobId, Settle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::fate::{self, Job};
use crate::middleware::Execution;
use crate::worker::Shared;

/// Runs one delivery; returns how to settle it, or `None` when it is not settled (given back at
/// shutdown, or stale: its lease is gone and another copy runs).
pub(crate) async fn process(
    shared: &Shared,
    queue: &Arc<str>,
    mut d: Delivery,
    cancel: CancellationToken,
) -> Option<Settle> {
    let entry_id = std::mem::take(&mut d.entry_id);
    let decoded = if d.envelope.is_empty() {
        Err(if d.foreign_fields.is_some() {
            DecodeError::missing_field_e()
        } else {
            DecodeError::empty_field_e()
        })
    } else {
        decode_envelope(&d.envelope)
    };
    let env = match decoded {
        Ok(env) => env,
        Err(err) => return Some(fate::undecodable_envelope(shared, queue, entry_id, &d, err)),
    };
    // The job's id: its own, or the one it carries from where it was first stored, or its entry.
    let indexed = !env.id.is_unset() || d.job_id.is_some();
    let id = if !env.id.is_unset() {
        env.id.clone()
    } else if let Some(id) = d.job_id.take() {
        JobId::from(id)
    } else {
        JobId::for_entry(queue, &entry_id)
    };
    let attempt = env.attempt.saturating_add(d.lease_expiries);
    let span = tracing::info_span!("job", id = %id, name = %env.job, queue = &**queue, attempt);
    async {
        let handler = shared.registry.get(&env.job);
        let options = handler.map(|h| h.options());
        let policy = Policy {
            max_attempts: env.max_attempts.or(options.map(|o| o.max_attempts)).unwrap_or(1),
            backoff: options.map(|o| o.backoff).unwrap_or_default(),
        };
        let job = Job {
            queue,
            entry_id,
            id,
            indexed,
            env: &env,
            raw: &d.envelope,
            attempt,
            policy,
            keep_result: options.and_then(|o| o.keep_result),
        };
        let Some(handler) = handler else {
            let outcome = AttemptOutcome::UnknownJob {
                known: shared.registry.owned_names(),
            };
            return fate::settle(shared, job, outcome);
        };
        if lost_too_often(attempt, policy.max_attempts, d.lease_expiries) {
            return fate::settle(
                shared,
                job,
                AttemptOutcome::Lost {
                    expiries: d.lease_expiries,
                },
            );
        }
        let payload = env.payload.get();
        if let Err(err) = check_size(payload.as_bytes(), shared.max_payload) {
            return fate::settle(shared, job, AttemptOutcome::Undecodable(err));
        }
        let mut ctx = JobContext::from_parts(
            job.id.clone(),
            env.job.clone(),
            queue.to_string(),
            attempt,
            policy.max_attempts,
            env.enqueued_time(crate::worker::entry_ms(&job.entry_id)),
            shared.soft_stop.clone(),
        )
        .with_cancel(cancel)
        .with_result_limit(shared.max_payload);
        // A worker given no state shares nothing more with each execution.
        if !shared.extensions.is_empty() {
            ctx = ctx.with_extensions(shared.extensions.clone());
        }
        let ctx = Arc::new(ctx);
        let run = match handler.prepare(
            ctx.clone(),
            payload,
            shared.extensions.clone(),
            shared.limits.clone(),
        ) {
            Ok(run) => run,
            Err(err) => return fate::settle(shared, job, AttemptOutcome::Undecodable(err)),
        };
        shared.events.emit(|| {
            Event::new(
                EventKind::Started,
                job.id.as_str(),
                env.job.as_str(),
                &**queue,
                attempt,
                shared.clock.now_ms(),
            )
        });
        // The context is kept past the run only when its result is kept.
        let kept = job.keep_result.is_some().then(|| ctx.clone());
        let outcome = shared.stack.run(Execution::new(ctx, run)).await;
        fate::settle_with(shared, job, outcome, kept.as_ref().and_then(|c| c.result()))
    }
    .instrument(span)
    .await
}
