//! The ticker: one task per worker. At start it makes each queue's known schedules the ones
//! this worker declares (`sync_periodic.lua`); then it sleeps until the next due time of any
//! schedule and fires it through `fire.lua`, which decides, atomically in Redis, whether this
//! due time still needs a run.

use std::sync::Arc;
use std::time::Duration;

use quern_core::{Clock, Event, EventKind, Events, Shutdown};
use quern_redis::{Fire, Storage, StorageError};

use super::{Declared, MissedRuns, Overlap};
use crate::backoff::Reconnect;

/// Longest sleep between two looks at the clock: a system clock that jumps, or a test's
/// manual clock, is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The same for a manual clock, which tests move by hand.
const MANUAL_SLEEP: Duration = Duration::from_millis(10);
/// At most this many due times are looked at per schedule and round (the latest ones).
const MAX_DUE: usize = 10_000;

pub(crate) struct Ticker {
    pub storage: Storage,
    pub schedules: Vec<Arc<Declared>>,
    /// The queues the worker works: their schedules not declared here are removed.
    pub queues: Vec<String>,
    pub clock: Clock,
    pub events: Events,
}

/// One schedule and the last due time this worker has dealt with.
struct Cursor {
    declared: Arc<Declared>,
    at_ms: u64,
}

/// The ticker of a worker on `broker`, working `queues`: `None` when the broker is not Redis
/// (fires are decided by a Redis script), or the registry knows no job types (the generic
/// `quern` binary must not remove anyone's schedules).
pub(crate) fn start<B: quern_core::Broker>(
    broker: &B,
    registry: &crate::Registry,
    queues: &[String],
    clock: &Clock,
    events: &Events,
) -> Option<Ticker> {
    // Generic over its broker, the worker learns here whether it is Redis's.
    let storage = (broker as &dyn std::any::Any).downcast_ref::<Storage>()?;
    if registry.is_empty() && registry.declared().is_empty() {
        return None;
    }
    Some(Ticker {
        storage: storage.clone(),
        schedules: registry.declared().to_vec(),
        queues: queues.to_vec(),
        clock: clock.clone(),
        events: events.clone(),
    })
}

impl Ticker {
    /// Registers this worker's schedules, and removes the ones of its queues (and of its
    /// schedules' queues) it does not declare. A queue without schedules, declared or known,
    /// is only read: a full Redis (which refuses `SADD` and `HSET`) does not stop a worker that
    /// declares none.
    async fn sync(&self) -> Result<(), StorageError> {
        let now = self.clock.now_ms();
        let mut all: Vec<String> = self.queues.clone();
        all.extend(self.schedules.iter().map(|d| d.queue.clone()));
        all.sort();
        all.dedup();
        for queue in &all {
            let declared: Vec<(String, String)> = self
                .schedules
                .iter()
                .filter(|d| &d.queue == queue)
                .map(|d| (d.periodic.name.clone(), d.description()))
                .collect();
            let keys = self.storage.keys(queue);
            if declared.is_empty() && self.storage.periodic_schedules(&keys).await?.is_empty() {
                continue;
            }
            let removed = self.storage.sync_periodic(&keys, now, &declared).await?;
            if !removed.is_empty() {
                tracing::info!(queue, ?removed, "periodic schedules no longer declared: removed");
            }
        }
        Ok(())
    }

    /// Registers the schedules (retrying until Redis takes them), then fires them until `stop`.
    pub(crate) async fn run(self, stop: Shutdown) {
        let mut reconnect = Reconnect::new(self.storage.describe(), "registering periodic schedules");
        while let Err(e) = self.sync().await {
            reconnect.failed(&e).await;
        }
        if self.schedules.is_empty() {
            return;
        }
        let mut reconnect = Reconnect::new(self.storage.describe(), "firing periodic schedules");
        let mut cursors = loop {
            match self.cursors().await {
                Ok(c) => break c,
                Err(e) => reconnect.failed(&e).await,
            }
        };
        let cap = if self.clock.is_manual() {
            MANUAL_SLEEP
        } else {
            MAX_SLEEP
        };
        loop {
            let now = self.clock.now_ms();
            let mut next_due = u64::MAX;
            for c in &mut cursors {
                if let Err(e) = self.round(c, now).await {
                    reconnect.failed(&e).await;
                    continue;
                }
                reconnect.succeeded();
                if let Some(n) = c.declared.periodic.next_after(c.at_ms) {
                    next_due = next_due.min(n);
                }
            }
            let sleep = Duration::from_millis(next_due.saturating_sub(self.clock.now_ms())).min(cap);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.wait() => return,
            }
        }
    }

    async fn cursors(&self) -> Result<Vec<Cursor>, StorageError> {
        let mut out = Vec::new();
        for d in &self.schedules {
            let state = self
                .storage
                .periodic_state(&self.storage.keys(&d.queue), &d.periodic.name)
                .await?;
            out.push(Cursor {
                declared: d.clone(),
                at_ms: state.last_due_ms.unwrap_or_else(|| self.clock.now_ms()),
            });
        }
        Ok(out)
    }

    /// Fires what `c` has due up to `now`, as its missed-run policy says.
    async fn round(&self, c: &mut Cursor, now: u64) -> Result<(), StorageError> {
        let p = &c.declared.periodic;
        let dues = p.due_between(c.at_ms, now, MAX_DUE);
        let Some(&latest) = dues.last() else {
            return Ok(());
        };
        for due in chosen(&dues, now, p.tolerance, p.missed) {
            self.fire(&c.declared, due, now).await?;
            c.at_ms = due;
        }
        c.at_ms = latest;
        Ok(())
    }

    async fn fire(&self, d: &Declared, due: u64, now: u64) -> Result<(), StorageError> {
        let id = d.run_id(due);
        let keys = self.storage.keys(&d.queue);
        let skip = d.periodic.overlap == Overlap::Skip;
        let fired = self
            .storage
            .fire_periodic(&keys, &d.periodic.name, due, &id, &d.envelope(&id), skip, now)
            .await?;
        match fired {
            Fire::Enqueued(_) => {
                tracing::debug!(schedule = %d.periodic.name, due_ms = due, job_id = %id, "periodic run enqueued");
                self.events
                    .emit(|| Event::new(EventKind::Enqueued, id.as_str(), d.job, d.queue.as_str(), 1, now));
            }
            Fire::Overlap => {
                tracing::info!(schedule = %d.periodic.name, due_ms = due, "periodic run skipped: the previous run is still queued or running");
            }
            _ => {}
        }
        Ok(())
    }
}

/// The due times of `dues` (oldest first, all at or before `now`) to fire under `policy`.
fn chosen(dues: &[u64], now: u64, tolerance: Duration, policy: MissedRuns) -> Vec<u64> {
    let tolerance = tolerance.as_millis() as u64;
    let split = dues.partition_point(|&d| now - d > tolerance);
    let (missed, on_time) = dues.split_at(split);
    let mut out: Vec<u64> = match policy {
        MissedRuns::Skip => Vec::new(),
        MissedRuns::FireOnce if on_time.is_empty() => missed.last().copied().into_iter().collect(),
        MissedRuns::FireOnce => Vec::new(),
        MissedRuns::Backfill { max, window } => {
            let window = window.as_millis() as u64;
            let within: Vec<u64> = missed.iter().copied().filter(|&d| now - d <= window).collect();
            within[within.len().saturating_sub(max as usize)..].to_vec()
        }
    };
    out.extend_from_slice(on_time);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn missed_run_policies_choose_their_due_times() {
        let dues = [1_000, 2_000, 3_000, 9_500];
        let now = 10_000;
        assert_eq!(chosen(&dues, now, S, MissedRuns::Skip), vec![9_500]);
        assert_eq!(chosen(&dues, now, S, MissedRuns::FireOnce), vec![9_500]);
        assert_eq!(chosen(&dues[..3], now, S, MissedRuns::FireOnce), vec![3_000]);
        assert_eq!(chosen(&dues[..3], now, S, MissedRuns::Skip), Vec::<u64>::new());
        let backfill = MissedRuns::Backfill {
            max: 2,
            window: Duration::from_millis(8_500),
        };
        assert_eq!(chosen(&dues, now, S, backfill), vec![2_000, 3_000, 9_500]);
        let backfill = MissedRuns::Backfill {
            max: 5,
            window: Duration::from_secs(60),
        };
        assert_eq!(chosen(&dues, now, S, backfill), vec![1_000, 2_000, 3_000, 9_500]);
    }
}
