//! Reading back, and asserting on, what waits in a namespace's queues.

use std::fmt::Write as _;

use quern_core::envelope::{decode_envelope, decode_payload};
use quern_core::{Job, JobInfo, JobState};

use super::namespace::Namespace;

/// Most jobs of each kind (pending, scheduled, retrying) read per queue.
const LIMIT: usize = 10_000;

impl Namespace {
    /// The jobs of type `J` waiting in its queue — pending, scheduled or retrying, in that
    /// order — decoded from their payloads.
    ///
    /// # Panics
    /// When Redis cannot be read, or a waiting job named `J::NAME` does not decode into `J`
    /// (the message has the decode diagnostic: a worker would dead-letter it).
    pub async fn enqueued<J: Job>(&self) -> Vec<J> {
        self.waiting_of::<J>()
            .await
            .into_iter()
            .map(|(_, job)| job)
            .collect()
    }

    /// Panics unless exactly one job of type `J` for which `matches` is true waits in its
    /// queue (pending, scheduled or retrying). The message lists what does wait.
    pub async fn assert_enqueued<J: Job>(&self, matches: impl Fn(&J) -> bool) {
        self.assert_enqueued_times::<J>(1, matches).await;
    }

    /// Panics unless exactly `times` jobs of type `J` for which `matches` is true wait in its
    /// queue. The message lists what does wait.
    pub async fn assert_enqueued_times<J: Job>(&self, times: usize, matches: impl Fn(&J) -> bool) {
        let found = self
            .waiting_of::<J>()
            .await
            .iter()
            .filter(|(_, job)| matches(job))
            .count();
        if found != times {
            panic!(
                "quern::testing: expected {times} matching {:?} job(s) enqueued, found {found}.\n{}",
                J::NAME,
                self.describe_waiting().await
            );
        }
    }

    /// Panics if any job of type `J` for which `matches` is true waits in its queue. The
    /// message lists what does wait.
    pub async fn assert_not_enqueued<J: Job>(&self, matches: impl Fn(&J) -> bool) {
        self.assert_enqueued_times::<J>(0, matches).await;
    }

    /// Every job waiting in every queue of the namespace.
    pub(super) async fn waiting(&self) -> Vec<JobInfo> {
        let inspector = self.inspector();
        let mut all = Vec::new();
        for queue in self.queues().await {
            match inspector.queued_jobs(&queue, LIMIT).await {
                Ok(jobs) => all.extend(jobs),
                Err(e) => panic!(
                    "quern::testing: reading queue {queue:?}: {}",
                    quern_core::ErrorChain::of(&e)
                ),
            }
        }
        all
    }

    async fn waiting_of<J: Job>(&self) -> Vec<(JobInfo, J)> {
        let queue = J::options().queue;
        let inspector = self.inspector();
        let jobs = match inspector.queued_jobs(&queue, LIMIT).await {
            Ok(jobs) => jobs,
            Err(e) => panic!(
                "quern::testing: reading queue {queue:?}: {}",
                quern_core::ErrorChain::of(&e)
            ),
        };
        jobs.into_iter()
            .filter_map(|info| {
                let text = info.envelope.clone()?;
                let env = decode_envelope(text.as_bytes()).ok()?;
                if env.job != J::NAME {
                    return None;
                }
                match decode_payload::<J>(env.payload.get()) {
                    Ok(job) => Some((info, job)),
                    Err(e) => panic!(
                        "quern::testing: job {} ({:?}, {}) does not decode into its type: {e}",
                        info.id,
                        J::NAME,
                        info.state
                    ),
                }
            })
            .collect()
    }

    /// What waits, one line per job, for assertion messages.
    pub(super) async fn describe_waiting(&self) -> String {
        let waiting = self.waiting().await;
        if waiting.is_empty() {
            return format!("Nothing is enqueued under prefix {:?}.", self.prefix());
        }
        let mut out = format!("Enqueued under prefix {:?}:", self.prefix());
        let now = self.clock().now_ms();
        for info in &waiting {
            let (name, payload) = info
                .envelope
                .as_deref()
                .and_then(|t| decode_envelope(t.as_bytes()).ok())
                .map(|env| (env.job.clone(), env.payload.get().to_owned()))
                .unwrap_or_else(|| ("?".into(), info.envelope.clone().unwrap_or_default()));
            let _ = write!(
                out,
                "\n  {name} {payload} — {} in queue {:?}",
                info.state, info.queue
            );
            if let (Some(due), JobState::Scheduled | JobState::Retrying) = (info.due_ms, info.state) {
                let _ = match due.checked_sub(now) {
                    Some(ms) if ms > 0 => write!(out, ", due in {ms} ms"),
                    _ => write!(out, ", due"),
                };
            }
        }
        out
    }
}
