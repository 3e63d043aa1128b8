//! A [`Broker`] that keeps everything in this process's memory: for users' unit tests and
//! for testing the worker's own components on a paused clock. It passes the same contract
//! suite as Redis. Nothing survives the process; nothing is shared with other processes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Broker, BrokerError, Delivery, Promoted, Settle, SettleOptions, TrimReport};
use crate::state::QueueStats;

/// An in-memory broker. Clones share the same queues.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use quern_core::broker::{Broker, memory::MemoryBroker};
/// let broker = MemoryBroker::new();
/// let q = broker.queue("emails").unwrap();
/// broker.push(&q, &[r#"{"job":"x","payload":{}}"#.to_owned()]).await.unwrap();
/// assert_eq!(broker.stats("emails").pending, 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBroker {
    queues: Arc<Mutex<HashMap<String, MemoryQueue>>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

/// A queue of a [`MemoryBroker`].
#[derive(Clone)]
pub struct MemoryQueue {
    name: Arc<str>,
    inner: Arc<Shared>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MemoryQueue").field(&self.name).finish()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Notified when jobs become ready to claim.
    arrived: Notify,
    /// Notified when a job is delayed or scheduled for retry.
    woken: Notify,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    ready: VecDeque<Entry>,
    leased: BTreeMap<u64, Leased>,
    /// (due ms, sequence) -> envelope.
    delayed: BTreeMap<(u64, u64), String>,
    /// job id -> (died at sequence, record).
    dead: HashMap<String, String>,
    dead_order: VecDeque<String>,
    wake_token: bool,
    completed: u64,
    failed: u64,
    cancelled: u64,
    /// job id -> finished record (kept until the broker is dropped).
    finished: HashMap<String, String>,
}

struct Entry {
    seq: u64,
    envelope: Vec<u8>,
    expiries: u32,
}

struct Leased {
    entry: Entry,
    consumer: String,
    since: Instant,
}

impl State {
    fn append(&mut self, envelope: Vec<u8>, expiries: u32) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.ready.push_back(Entry {
            seq,
            envelope,
            expiries,
        });
    }

    fn take_leased(&mut self, entry_id: &str) -> Option<Leased> {
        self.leased.remove(&parse(entry_id)?)
    }
}

fn entry_id(seq: u64) -> String {
    format!("0-{seq}")
}

fn parse(entry_id: &str) -> Option<u64> {
    entry_id.strip_prefix("0-")?.parse().ok()
}

/// The in-memory broker cannot fail.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory broker cannot fail")]
pub struct MemoryError(Infallible);

impl BrokerError for MemoryError {
    fn is_retryable(&self) -> bool {
        match self.0 {}
    }
}

impl MemoryBroker {
    /// A broker with no queues yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, name: &str) -> MemoryQueue {
        let mut queues = lock(&self.queues);
        queues
            .entry(name.to_owned())
            .or_insert_with(|| MemoryQueue {
                name: name.into(),
                inner: Arc::new(Shared {
                    state: Mutex::new(State::default()),
                    arrived: Notify::new(),
                    woken: Notify::new(),
                }),
            })
            .clone()
    }

    /// Counts for `queue`, as `stats` shows them for Redis.
    pub fn stats(&self, queue: &str) -> QueueStats {
        let q = self.get(queue);
        let s = lock(&q.inner.state);
        let mut stats = QueueStats::new(queue);
        stats.pending = s.ready.len() as u64;
        stats.running = s.leased.len() as u64;
        stats.scheduled = s.delayed.len() as u64;
        stats.dead = s.dead.len() as u64;
        stats.completed = s.completed;
        stats.failed = s.failed;
        stats.cancelled = s.cancelled;
        stats
    }

    /// The finished record ([`FinishedRecord`](crate::state::FinishedRecord) JSON) of `job_id`
    /// on `queue`: a completed job whose type keeps results, or a cancelled one.
    pub fn finished_record(&self, queue: &str, job_id: &str) -> Option<String> {
        lock(&self.get(queue).inner.state).finished.get(job_id).cloned()
    }

    /// The dead record of `job_id` on `queue`, if it is dead.
    pub fn dead_record(&self, queue: &str, job_id: &str) -> Option<String> {
        lock(&self.get(queue).inner.state).dead.get(job_id).cloned()
    }

    /// The names of the queues that exist, sorted.
    pub fn queues(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.queues).keys().cloned().collect();
        v.sort();
        v
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker for MemoryBroker {
    type Error = MemoryError;
    type Queue = MemoryQueue;
    type Claimer = ();
    type Waiter = ();

    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn queue(&self, name: &str) -> Result<MemoryQueue, MemoryError> {
        Ok(self.get(name))
    }

    fn queue_name(queue: &MemoryQueue) -> &str {
        &queue.name
    }

    async fn prepare(&self, _: &MemoryQueue) -> Result<(), MemoryError> {
        Ok(())
    }

    async fn claimer(&self, _: Duration) -> Result<(), MemoryError> {
        Ok(())
    }

    async fn claim(
        &self,
        _: &mut (),
        q: &MemoryQueue,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, MemoryError> {
        let deadline = Instant::now() + block;
        loop {
            let arrived = q.inner.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a push between the look and the wait is not missed.
            arrived.as_mut().enable();
            {
                let mut s = lock(&q.inner.state);
                let n = count.min(s.ready.len());
                if n > 0 {
                    let now = Instant::now();
                    let mut out = Vec::with_capacity(n);
                    for entry in s.ready.drain(..n).collect::<Vec<_>>() {
                        out.push(
                            Delivery::new(entry_id(entry.seq), entry.envelope.clone())
                                .with_lease_expiries(entry.expiries),
                        );
                        s.leased.insert(
                            entry.seq,
                            Leased {
                                entry,
                                consumer: consumer.to_owned(),
                                since: now,
                            },
                        );
                    }
                    return Ok(out);
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn settle(
        &self,
        q: &MemoryQueue,
        ops: &[Settle],
        options: SettleOptions,
    ) -> Result<(), MemoryError> {
        let mut s = lock(&q.inner.state);
        let mut wake = false;
        for op in ops {
            // A job whose lease was lost meanwhile is not this worker's to settle.
            if s.take_leased(op.entry_id()).is_none() {
                continue;
            }
            match op {
                Settle::Complete { .. } => s.completed += 1,
                Settle::Finish {
                    job_id,
                    cancelled,
                    record,
                    ..
                } => {
                    if *cancelled {
                        s.cancelled += 1;
                    } else {
                        s.completed += 1;
                    }
                    s.finished.insert(job_id.clone(), record.clone());
                }
                Settle::Retry { due_ms, envelope, .. } | Settle::Snooze { due_ms, envelope, .. } => {
                    if matches!(op, Settle::Retry { .. }) {
                        s.failed += 1;
                    }
                    s.next_seq += 1;
                    let seq = s.next_seq;
                    s.delayed.insert((*due_ms, seq), envelope.clone());
                    wake = true;
                }
                Settle::Dead { job_id, record, .. } => {
                    s.failed += 1;
                    if s.dead.insert(job_id.clone(), record.clone()).is_none() {
                        s.dead_order.push_back(job_id.clone());
                    }
                    while s.dead_order.len() as u64 > options.retention.max_count {
                        if let Some(old) = s.dead_order.pop_front() {
                            s.dead.remove(&old);
                        }
                    }
                }
            }
        }
        if wake {
            s.wake_token = true;
            drop(s);
            q.inner.woken.notify_waiters();
        }
        Ok(())
    }

    async fn renew(
        &self,
        q: &MemoryQueue,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<String>, MemoryError> {
        let mut s = lock(&q.inner.state);
        let now = Instant::now();
        let mut kept = Vec::new();
        for id in entry_ids {
            if let Some(l) = parse(id).and_then(|seq| s.leased.get_mut(&seq))
                && l.consumer == consumer
            {
                l.since = now;
                kept.push(id.clone());
            }
        }
        Ok(kept)
    }

    async fn requeue_expired(&self, q: &MemoryQueue, lease: Duration) -> Result<usize, MemoryError> {
        let mut s = lock(&q.inner.state);
        let now = Instant::now();
        let expired: Vec<u64> = s
            .leased
            .iter()
            .filter(|(_, l)| now.duration_since(l.since) >= lease)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &expired {
            if let Some(l) = s.leased.remove(seq) {
                s.append(l.entry.envelope, l.entry.expiries + 1);
            }
        }
        drop(s);
        if !expired.is_empty() {
            q.inner.arrived.notify_waiters();
        }
        Ok(expired.len())
    }

    async fn release(&self, q: &MemoryQueue, consumer: &str) -> Result<usize, MemoryError> {
        let mut s = lock(&q.inner.state);
        let mine: Vec<u64> = s
            .leased
            .iter()
            .filter(|(_, l)| l.consumer == consumer)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &mine {
            if let Some(l) = s.leased.remove(seq) {
                s.append(l.entry.envelope, l.entry.expiries);
            }
        }
        drop(s);
        if !mine.is_empty() {
            q.inner.arrived.notify_waiters();
        }
        Ok(mine.len())
    }

    async fn remove_consumer(&self, _: &MemoryQueue, _: &str) -> Result<(), MemoryError> {
        Ok(())
    }

    async fn promote_due(&self, q: &MemoryQueue, now_ms: u64) -> Result<Promoted, MemoryError> {
        let mut s = lock(&q.inner.state);
        let mut moved = 0;
        while let Some(entry) = s.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let envelope = entry.remove();
            s.append(envelope.into_bytes(), 0);
            moved += 1;
        }
        let next = s.delayed.keys().next().map(|(due, _)| *due);
        drop(s);
        if moved > 0 {
            q.inner.arrived.notify_waiters();
        }
        Ok(Promoted::new(moved, next))
    }

    async fn waiter(&self, _: Duration) -> Result<(), MemoryError> {
        Ok(())
    }

    async fn wait_for_wake(
        &self,
        _: &mut (),
        q: &MemoryQueue,
        timeout: Duration,
    ) -> Result<bool, MemoryError> {
        let woken = q.inner.woken.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if std::mem::take(&mut lock(&q.inner.state).wake_token) {
            return Ok(true);
        }
        if tokio::time::timeout(timeout, woken).await.is_err() {
            return Ok(false);
        }
        lock(&q.inner.state).wake_token = false;
        Ok(true)
    }

    async fn trim(&self, _: &MemoryQueue) -> Result<TrimReport, MemoryError> {
        // Completed jobs are dropped when settled: nothing is left to trim.
        Ok(TrimReport::default())
    }

    async fn push(&self, q: &MemoryQueue, envelopes: &[String]) -> Result<(), MemoryError> {
        let mut s = lock(&q.inner.state);
        for e in envelopes {
            s.append(e.as_bytes().to_vec(), 0);
        }
        drop(s);
        q.inner.arrived.notify_waiters();
        Ok(())
    }

    async fn schedule(&self, q: &MemoryQueue, jobs: &[(u64, String)]) -> Result<(), MemoryError> {
        let mut s = lock(&q.inner.state);
        for (due, e) in jobs {
            s.next_seq += 1;
            let seq = s.next_seq;
            s.delayed.insert((*due, seq), e.clone());
        }
        s.wake_token = true;
        drop(s);
        q.inner.woken.notify_waiters();
        Ok(())
    }
}
