//! Settles finished executions in batches: one round trip for everything that finished since
//! the last one. A batch that cannot be written is retried, never dropped.

use std::sync::Arc;

use quern_redis::{DeadRetention, QueueKeys, Settle, Storage};
use tokio::sync::mpsc;

use crate::backoff::Reconnect;
use crate::in_flight::InFlight;

/// Most operations written in one round trip.
const MAX_BATCH: usize = 1024;

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
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        loop {
            match storage.settle(&keys, &batch, retention).await {
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
        in_flight.remove_all(batch.iter().map(Settle::entry_id));
        batch.clear();
    }
}
