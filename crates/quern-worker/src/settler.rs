//! Settles finished executions in batches: one round trip for everything that finished since
//! the last one. A batch that cannot be written for now is written again, never dropped; a
//! write the storage refuses is decided per job by the lifecycle model
//! ([`after_settle_error`]): dead-lettered, or surfaced, never left to block the queue.
//!
//! Completed jobs are acknowledged, and their entries trimmed from the head of the stream in
//! blocks ([`Broker::trim`]), which costs Redis less than deleting each one. Trimming stops at
//! the oldest leased entry: while a long job holds it back, completed entries are deleted one by
//! one instead, so the stream never keeps more than about [`HOLD_BACK_MS`] of them.

use std::sync::Arc;
use std::time::Duration;

use quern_core::envelope::{Failure, decode_envelope};
use quern_core::lifecycle::{AfterSettleError, FailureKind, after_settle_error};
use quern_core::{
    Broker, BrokerError, Clock, DeadReason, DeadRecord, DeadRetention, ErrorChain, Settle, SettleOptions,
    Shutdown,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Reconnect;
use crate::in_flight::InFlight;

/// Most operations written in one round trip.
const MAX_BATCH: usize = 1024;
/// Trim after this many acknowledgements...
const TRIM_EVERY: usize = 4096;
/// ...or this long after the first one not yet trimmed.
const TRIM_AFTER: Duration = Duration::from_millis(100);
/// When the oldest leased entry is this much older (in entry time) than the last delivered one,
/// trimming is held back: completed entries are deleted as they are acknowledged.
pub(crate) const HOLD_BACK_MS: u64 = 1_000;

pub(crate) struct Settler<B: Broker> {
    pub broker: B,
    pub queue: B::Queue,
    pub name: Arc<str>,
    pub in_flight: Arc<InFlight>,
    pub retention: DeadRetention,
    pub clock: Clock,
}

impl<B: Broker> Settler<B> {
    /// Runs until every sender is dropped and everything received is written, or `give_up`
    /// fires while the storage is unreachable (the unwritten jobs keep their leases and run
    /// again elsewhere).
    pub(crate) async fn run(self, mut rx: mpsc::UnboundedReceiver<Settle>, give_up: Shutdown) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut reconnect = Reconnect::new(self.broker.describe(), "settling jobs");
        let mut trim = Trimmer::default();
        loop {
            let received = match trim.due_at() {
                // Acknowledged entries wait to be trimmed: wake up for them even if nothing comes.
                Some(at) => tokio::time::timeout_at(at, rx.recv_many(&mut batch, MAX_BATCH))
                    .await
                    .ok(),
                None => Some(rx.recv_many(&mut batch, MAX_BATCH).await),
            };
            if received == Some(0) {
                // Every sender is gone: trim what this worker acknowledged, then stop.
                trim.run(&self.broker, &self.queue, &self.name).await;
                return;
            }
            if !batch.is_empty() {
                self.in_flight.settling(batch.iter().map(Settle::entry_id));
                if !self
                    .write(&batch, trim.delete_acked, &mut reconnect, &give_up)
                    .await
                {
                    return;
                }
                let acked = batch
                    .iter()
                    .filter(|op| matches!(op, Settle::Complete { .. } | Settle::Finish { .. }))
                    .count();
                trim.acknowledged(acked);
                self.in_flight.remove_all(batch.iter().map(Settle::entry_id));
                batch.clear();
            }
            if trim.is_due() {
                trim.run(&self.broker, &self.queue, &self.name).await;
            }
        }
    }

    /// Writes `batch`, trying again while the storage is unreachable; false when `give_up`
    /// fired first.
    pub(crate) async fn write(
        &self,
        batch: &[Settle],
        delete_acked: bool,
        reconnect: &mut Reconnect,
        give_up: &Shutdown,
    ) -> bool {
        let options = SettleOptions::new(self.retention, delete_acked);
        loop {
            match self.broker.settle(&self.queue, batch, options).await {
                Ok(()) => {
                    reconnect.succeeded();
                    return true;
                }
                Err(e) if e.is_retryable() => {
                    if give_up.is_triggered() {
                        tracing::error!(queue = &*self.name, unsettled = batch.len(), error = %ErrorChain::of(&e),
                            "shutting down with results not written; those jobs keep their leases and will run again");
                        return false;
                    }
                    reconnect.failed(&e).await;
                }
                Err(e) => {
                    // Refused: find which ops the storage refuses, so the others are written.
                    if batch.len() == 1 {
                        self.refused(&batch[0], &e, options).await;
                    } else {
                        for op in batch {
                            if let Err(e) = self
                                .broker
                                .settle(&self.queue, std::slice::from_ref(op), options)
                                .await
                            {
                                self.refused(op, &e, options).await;
                            }
                        }
                    }
                    return true;
                }
            }
        }
    }

    /// An op the storage refused (or could not take one by one).
    async fn refused(&self, op: &Settle, err: &B::Error, options: SettleOptions) {
        let chain = ErrorChain::of(err);
        match after_settle_error(op.kind(), err.is_retryable()) {
            AfterSettleError::DeadLetter => {
                if let Some(dead) = self.dead_instead(op, &chain) {
                    match self
                        .broker
                        .settle(&self.queue, std::slice::from_ref(&dead), options)
                        .await
                    {
                        Ok(()) => {
                            tracing::error!(queue = &*self.name, entry = op.entry_id(), error = %chain,
                                "the job's outcome was refused by the storage; dead-lettered instead");
                            return;
                        }
                        Err(e) => {
                            return self.surface(op, &ErrorChain::of(&e));
                        }
                    }
                }
                self.surface(op, &chain);
            }
            _ => self.surface(op, &chain),
        }
    }

    /// The dead record that replaces a refused retry or snooze.
    fn dead_instead(&self, op: &Settle, chain: &ErrorChain) -> Option<Settle> {
        let (Settle::Retry {
            entry_id,
            job_id,
            envelope,
            ..
        }
        | Settle::Snooze {
            entry_id,
            job_id,
            envelope,
            ..
        }) = op
        else {
            return None;
        };
        let now = self.clock.now_ms();
        let message = format!(
            "{}: writing its next attempt failed: {chain}",
            DeadReason::SettleRefused.describe()
        );
        let mut record = DeadRecord::new(
            job_id.clone(),
            &self.name,
            DeadReason::SettleRefused,
            message,
            envelope.as_bytes(),
            now,
        );
        if let Ok(env) = decode_envelope(envelope.as_bytes()) {
            record = record.with_envelope(&env, env.attempt);
        }
        let mut failure = Failure::new(record.attempt, FailureKind::Settle.as_str(), chain.0.clone());
        failure.at = now;
        Some(Settle::Dead {
            entry_id: entry_id.clone(),
            job_id: job_id.clone(),
            record: record.with_failure(failure).encode(),
        })
    }

    /// Gives up writing `op`: logged with the whole chain; its lease is no longer renewed, so it
    /// expires and the job runs again (or ends dead once its attempts are spent).
    fn surface(&self, op: &Settle, chain: &ErrorChain) {
        tracing::error!(queue = &*self.name, entry = op.entry_id(), outcome = ?op.kind(), error = %chain,
            "the storage refused this job's outcome and retrying cannot fix it; the job is left to its lease, which expires and runs it again");
    }
}

/// When to trim, and whether trimming is held back by a long lease.
#[derive(Debug, Default)]
struct Trimmer {
    /// Acknowledged since the last trim.
    untrimmed: usize,
    /// When the first of those was acknowledged.
    since: Option<Instant>,
    /// Delete completed entries at once (trimming is held back).
    delete_acked: bool,
}

impl Trimmer {
    fn acknowledged(&mut self, n: usize) {
        if n > 0 {
            self.untrimmed += n;
            self.since.get_or_insert_with(Instant::now);
        }
    }

    fn due_at(&self) -> Option<Instant> {
        self.since.map(|t| t + TRIM_AFTER)
    }

    fn is_due(&self) -> bool {
        self.untrimmed >= TRIM_EVERY || self.due_at().is_some_and(|at| Instant::now() >= at)
    }

    /// Trims; a failure is only logged (the entries are trimmed next time; nothing is lost).
    async fn run<B: Broker>(&mut self, broker: &B, queue: &B::Queue, name: &str) {
        if self.untrimmed == 0 {
            return;
        }
        self.untrimmed = 0;
        self.since = None;
        match broker.trim(queue).await {
            Ok(report) => {
                let held = report.held_back_ms > HOLD_BACK_MS;
                if held != self.delete_acked {
                    tracing::debug!(queue = name, oldest_leased = ?report.oldest_leased, held_back_ms = report.held_back_ms,
                        "{}", if held { "a long lease holds trimming back; deleting completed jobs one by one" }
                        else { "trimming completed jobs in blocks" });
                }
                self.delete_acked = held;
            }
            Err(e) => {
                tracing::debug!(queue = name, error = %ErrorChain::of(&e), "trimming completed jobs failed; will try again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use quern_core::ManualClock;
    use quern_core::broker::memory::MemoryBroker;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn trimming_is_due_after_a_block_of_acks_or_a_tenth_of_a_second() {
        let mut t = Trimmer::default();
        assert!(
            !t.is_due() && t.due_at().is_none(),
            "nothing acknowledged, nothing to trim"
        );
        t.acknowledged(10);
        assert!(!t.is_due());
        tokio::time::advance(TRIM_AFTER - Duration::from_millis(1)).await;
        assert!(!t.is_due());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(t.is_due(), "due 100 ms after the first acknowledgement");
        let mut t = Trimmer::default();
        t.acknowledged(TRIM_EVERY);
        assert!(t.is_due(), "due at once after a block of acknowledgements");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_written_once_and_its_leases_are_no_longer_renewed() {
        let broker = MemoryBroker::new();
        let queue = broker.queue("settle").unwrap();
        let envs: Vec<String> = (0..3)
            .map(|n| format!(r#"{{"job":"j","payload":{n}}}"#))
            .collect();
        broker.push(&queue, &envs).await.unwrap();
        let got = broker
            .claim(&mut (), &queue, "w", 3, Duration::ZERO)
            .await
            .unwrap();
        let in_flight = Arc::new(InFlight::default());
        in_flight.insert_all(got.iter().map(|d| d.entry_id.as_str()));
        let settler = Settler {
            broker: broker.clone(),
            queue,
            name: "settle".into(),
            in_flight: in_flight.clone(),
            retention: DeadRetention::default(),
            clock: ManualClock::at(1_000).clock(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let running = tokio::spawn(settler.run(rx, Shutdown::new()));
        tx.send(Settle::complete(got[0].entry_id.clone())).unwrap();
        tx.send(Settle::complete(got[1].entry_id.clone())).unwrap();
        tx.send(Settle::Retry {
            entry_id: got[2].entry_id.clone(),
            job_id: "settle/0-3".into(),
            due_ms: 2_000,
            envelope: envs[2].clone(),
        })
        .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the settler stops once every sender is gone")
            .unwrap();
        let stats = broker.stats("settle");
        assert_eq!((stats.completed, stats.scheduled, stats.running), (2, 1, 0));
        assert!(in_flight.ids().is_empty(), "settled jobs are no longer renewed");
    }
}
