//! [`Namespace::drain`]: a real worker runs what is queued until nothing is left to do now.

use std::time::Duration;

use quern_core::{ErrorChain, Event, EventKind, Shutdown};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::namespace::Namespace;

/// How long the drain waits between two looks at the queues when no event arrives: a settled
/// job (its result written) emits none, so the last one is noticed by looking.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Bounds of one [`Namespace::drain_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainLimit {
    /// Stop claiming once this many executions have started (jobs that enqueue jobs forever).
    pub max_jobs: u64,
    /// Stop after this long (a job that never ends). Running jobs then get the worker's grace
    /// period (5 s in a namespace) before they are cancelled and given back.
    pub timeout: Duration,
}

impl Default for DrainLimit {
    /// 10,000 executions, 30 s.
    fn default() -> Self {
        Self {
            max_jobs: 10_000,
            timeout: Duration::from_secs(30),
        }
    }
}

impl DrainLimit {
    /// At most `n` executions, 30 s.
    pub fn max_jobs(n: u64) -> Self {
        Self {
            max_jobs: n,
            ..Self::default()
        }
    }

    /// At most `timeout`, 10,000 executions.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }
}

/// Why a drain stopped before its queues were empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainStopped {
    /// [`DrainLimit::max_jobs`] executions had started.
    MaxJobs,
    /// [`DrainLimit::timeout`] passed.
    Timeout,
}

/// What a drain did, counted from the worker's events, and what it left waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Executions started.
    pub executions: u64,
    /// Executions that succeeded.
    pub succeeded: u64,
    /// Failed executions whose job will run again (its retry left waiting, or run by the
    /// drain when due by the clock).
    pub retried: u64,
    /// Executions that asked to run again later.
    pub snoozed: u64,
    /// Jobs moved to the dead set.
    pub dead: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Jobs given back to their queue unfinished (the drain stopped at a bound).
    pub given_back: u64,
    /// Delayed jobs left waiting, not yet due by the namespace's clock.
    pub scheduled: u64,
    /// Retries left waiting, not yet due by the namespace's clock.
    pub retrying: u64,
    /// `None` when the queues were emptied; else the bound that stopped it.
    pub stopped: Option<DrainStopped>,
    /// Every transition the worker reported, in order (events beyond the hub's capacity that a
    /// busy drain could not read are counted in [`missed_events`](Self::missed_events)).
    pub events: Vec<Event>,
    /// Events the drain missed (the counts above are then too low).
    pub missed_events: u64,
}

impl Drained {
    fn record(&mut self, event: Event) {
        match &event.kind {
            EventKind::Started => self.executions += 1,
            EventKind::Succeeded => self.succeeded += 1,
            EventKind::Retried { .. } => self.retried += 1,
            EventKind::Snoozed { .. } => self.snoozed += 1,
            EventKind::Dead { .. } => self.dead += 1,
            EventKind::Cancelled => self.cancelled += 1,
            EventKind::GivenBack => self.given_back += 1,
            _ => {}
        }
        self.events.push(event);
    }

    /// Executions started and not yet ended, as far as the events tell.
    fn in_flight(&self) -> u64 {
        let ended =
            self.succeeded + self.retried + self.snoozed + self.dead + self.cancelled + self.given_back;
        self.executions.saturating_sub(ended)
    }
}

impl Namespace {
    /// Runs a real worker ([`worker`](Self::worker)) on the namespace until nothing is left to
    /// do now: no pending job, none running, no delayed job or retry due by the namespace's
    /// [`clock`](Self::clock). Jobs that the drained jobs enqueue run too, and so do retries
    /// the clock already makes due. Bounded by [`DrainLimit::default`] (10,000 executions,
    /// 30 s).
    ///
    /// # Panics
    /// When a bound stops it (the message lists what is still enqueued), or the worker cannot
    /// start. [`drain_with`](Self::drain_with) returns instead.
    pub async fn drain(&self) -> Drained {
        let limit = DrainLimit::default();
        let drained = self.drain_with(limit).await;
        if let Some(why) = drained.stopped {
            panic!(
                "quern::testing: the drain stopped before the queues were empty ({why:?}, {limit:?}) \
                 after {} executions.\n{}",
                drained.executions,
                self.describe_waiting().await
            );
        }
        drained
    }

    /// [`drain`](Self::drain) with other bounds; returns when one is reached, with
    /// [`Drained::stopped`] saying which.
    ///
    /// # Panics
    /// When the worker cannot start (its jobs' resources are not configured, say).
    pub async fn drain_with(&self, limit: DrainLimit) -> Drained {
        let deadline = Instant::now() + limit.timeout;
        let mut drained = Drained::default();
        // One worker per round: a round ends when the queues look empty; the worker's shutdown
        // then writes every outcome, and a second look decides whether that is true.
        while self.has_work().await {
            if drained.executions >= limit.max_jobs {
                drained.stopped = Some(DrainStopped::MaxJobs);
                break;
            }
            if Instant::now() >= deadline {
                drained.stopped = Some(DrainStopped::Timeout);
                break;
            }
            let worker = self.worker();
            let mut events = worker.event_hub().subscribe();
            let stop = Shutdown::new();
            let run = worker.run(crate::shutdown_from(&stop));
            let watch = async {
                let mut ended = false;
                loop {
                    tokio::select! {
                        received = tokio::time::timeout(LOOK_EVERY, events.recv()) => match received {
                            Ok(Ok(event)) => {
                                drained.record(event);
                                // Take what else is there before looking at Redis.
                                loop {
                                    match events.try_recv() {
                                        Ok(event) => drained.record(event),
                                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => drained.missed_events += n,
                                        Err(_) => break,
                                    }
                                }
                            }
                            Ok(Err(RecvError::Lagged(n))) => drained.missed_events += n,
                            // The worker has stopped by itself (it could not start, say).
                            Ok(Err(RecvError::Closed)) => ended = true,
                            Err(_) => {}
                        },
                        () = tokio::time::sleep_until(deadline) => {
                            drained.stopped = Some(DrainStopped::Timeout);
                            break;
                        }
                    }
                    if ended {
                        break;
                    }
                    if drained.executions >= limit.max_jobs {
                        drained.stopped = Some(DrainStopped::MaxJobs);
                        break;
                    }
                    if (drained.missed_events > 0 || drained.in_flight() == 0) && !self.has_work().await {
                        break;
                    }
                }
                stop.trigger();
            };
            let (ran, ()) = tokio::join!(run, watch);
            if let Err(e) = ran {
                panic!(
                    "quern::testing: the drain's worker did not start: {}",
                    ErrorChain::of(&e)
                );
            }
            // What the worker's shutdown reported last.
            while let Ok(event) = events.try_recv() {
                drained.record(event);
            }
            if drained.stopped.is_some() {
                break;
            }
        }
        for queue in self.queues().await {
            if let Ok(stats) = self.storage().stats(&self.storage().keys(&queue)).await {
                drained.scheduled += stats.scheduled;
                drained.retrying += stats.retrying;
            }
        }
        drained
    }

    /// Moves what the clock made due to its queue, then tells whether any queue has a job
    /// pending or running.
    async fn has_work(&self) -> bool {
        let now = self.clock().now_ms();
        for queue in self.queues().await {
            let keys = self.storage().keys(&queue);
            let promoted = self.storage().promote_due(&keys, now).await;
            let stats = self.storage().stats(&keys).await;
            match (promoted, stats) {
                (Ok(_), Ok(stats)) if stats.pending == 0 && stats.running == 0 => {}
                (Ok(_), Ok(_)) => return true,
                (Err(e), _) | (_, Err(e)) => {
                    panic!("quern::testing: reading queue {queue:?}: {}", ErrorChain::of(&e))
                }
            }
        }
        false
    }
}
