//! In-process events: every transition of a job, emitted once to whoever subscribed.
//!
//! Metrics, the dashboard and workflows subscribe to an [`Events`] hub instead of being wired
//! into the worker. With no subscriber, emitting costs one atomic load: the event is not even
//! built.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::dead::DeadReason;

/// A job's transition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// Written to its queue (or its delayed set) by a producer of this process.
    Enqueued,
    /// An execution started.
    Started,
    /// An execution succeeded; the job is done.
    Succeeded,
    /// An execution failed; the next attempt is due at `at_ms`.
    Retried {
        /// Due time, ms since the epoch.
        at_ms: u64,
    },
    /// The job asked to run later, without spending an attempt.
    Snoozed {
        /// Due time, ms since the epoch.
        until_ms: u64,
    },
    /// The job went to the dead set.
    Dead {
        /// Why.
        reason: DeadReason,
    },
    /// The job was cancelled.
    Cancelled,
    /// The worker gave the job back to its queue unchanged (shutdown).
    GivenBack,
}

/// One transition of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The job id.
    pub job_id: Arc<str>,
    /// The job's name (empty when it could not be read).
    pub job: Arc<str>,
    /// Its queue.
    pub queue: Arc<str>,
    /// The attempt it concerns (1-based).
    pub attempt: u32,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

impl Event {
    /// An event of `kind` for a job.
    pub fn new(
        kind: EventKind,
        job_id: impl Into<Arc<str>>,
        job: impl Into<Arc<str>>,
        queue: impl Into<Arc<str>>,
        attempt: u32,
        at_ms: u64,
    ) -> Self {
        Self {
            kind,
            job_id: job_id.into(),
            job: job.into(),
            queue: queue.into(),
            attempt,
            at_ms,
        }
    }
}

/// A broadcast hub of [`Event`]s. Cheap to clone; clones share subscribers.
///
/// A subscriber that falls more than `capacity` events behind misses the oldest ones (its
/// `recv` reports how many it lagged) rather than slowing the worker down.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use quern_core::events::{Event, EventKind, Events};
/// let events = Events::new(1024);
/// let mut rx = events.subscribe();
/// events.emit(|| Event::new(EventKind::Started, "id-1", "send_email", "emails", 1, 0));
/// assert_eq!(rx.recv().await.unwrap().kind, EventKind::Started);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Events {
    /// A hub keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Receives every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Whether anyone listens (when not, [`emit`](Self::emit) builds nothing).
    #[inline]
    pub fn is_observed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends the event `make` builds, if anyone listens.
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if self.is_observed() {
            // An error only means the last subscriber left in between.
            let _ = self.tx.send(make());
        }
    }
}
