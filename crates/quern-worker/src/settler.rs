//! Settles finished executions in batches: one round trip for everything that finished since
//! the last one. A batch that cannot be written is retried, never dropped.
//!
//! Completed jobs are acknowledged, and their entries trimmed from the head of the stream in
//! blocks ([`Storage::trim_acked`]), which costs Redis less than deleting each one. Trimming stops
//! at the oldest leased entry: while a long job holds it back, completed entries are deleted one
//! by one instead, so the stream never keeps more than about [`HOLD_BACK_MS`] of them.

use std::sync::Arc;
use std::time::Duration;

use quern_redis::{DeadRetention, QueueKeys, Settle, Storage};
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

/// Runs until every sender is dropped and everything received is written, or `give_up` fires
/// while Redis is unreachable (the unwritten jobs keep their leases and run again elsewhere).
pub(crate) async fn run(
    storage: Storage,
    keys: QueueKeys,
    mut rx: mpsc::UnboundedReceiver<Settle>,
    in_flight: Arc<InFlight>,
    retention: DeadRetention,
    give_up: quern_core::Shutdown,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut reconnect = Reconnect::new(&storage, "settling jobs");
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
            trim.run(&storage, &keys).await;
            return;
        }
        if !batch.is_empty() {
            loop {
                match storage.settle(&keys, &batch, retention, trim.delete_acked).await {
                    Ok(()) => {
                        reconnect.succeeded();
                        break;
                    }
                    Err(e) => {
                        if give_up.is_triggered() {
                            tracing::error!(queue = %keys.queue, unsettled = batch.len(), error = %quern_core::ErrorChain::of(&e),
                                "shutting down with results not written; those jobs keep their leases and will run again");
                            return;
                        }
                        reconnect.failed(&e).await;
                    }
                }
            }
            let acked = batch.iter().filter(|op| matches!(op, Settle::Ack { .. })).count();
            trim.acknowledged(acked);
            in_flight.remove_all(batch.iter().map(Settle::entry_id));
            batch.clear();
        }
        if trim.is_due() {
            trim.run(&storage, &keys).await;
        }
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
    async fn run(&mut self, storage: &Storage, keys: &QueueKeys) {
        if self.untrimmed == 0 {
            return;
        }
        self.untrimmed = 0;
        self.since = None;
        match storage.trim_acked(keys).await {
            Ok(report) => {
                let held = report.held_back_ms() > HOLD_BACK_MS;
                if held != self.delete_acked {
                    tracing::debug!(queue = %keys.queue, oldest_leased = ?report.oldest_leased, held_back_ms = report.held_back_ms(),
                        "{}", if held { "a long lease holds trimming back; deleting completed jobs one by one" }
                        else { "trimming completed jobs in blocks" });
                }
                self.delete_acked = held;
            }
            Err(e) => {
                tracing::debug!(queue = %keys.queue, error = %quern_core::ErrorChain::of(&e), "trimming completed jobs failed; will try again");
            }
        }
    }
}
