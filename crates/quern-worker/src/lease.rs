//! Leases: renewing those of running jobs, and requeueing those that expired.

use std::sync::Arc;
use std::time::Duration;

use quern_core::Shutdown;
use quern_redis::{QueueKeys, Storage};

use crate::backoff::Reconnect;
use crate::in_flight::InFlight;

/// Every `lease / 3`, renews the leases of this worker's running jobs in one command.
pub(crate) async fn renew(
    storage: Storage,
    keys: QueueKeys,
    consumer: String,
    in_flight: Arc<InFlight>,
    lease: Duration,
    stop: Shutdown,
) {
    let mut reconnect = Reconnect::new(&storage, "renewing leases");
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait() => return,
        }
        let ids = in_flight.ids();
        if ids.is_empty() {
            continue;
        }
        match storage.renew(&keys, &consumer, &ids).await {
            Ok(kept) => {
                reconnect.succeeded();
                let lost = ids.len() - kept.len();
                if lost > 0 {
                    tracing::warn!(queue = %keys.queue, lost, "leases expired before renewal; those jobs were queued again and may run twice");
                }
            }
            Err(e) => reconnect.failed(&e).await,
        }
    }
}

/// Every `lease / 2`, puts jobs whose lease expired (their worker died) back in the queue.
pub(crate) async fn reap(storage: Storage, keys: QueueKeys, lease: Duration, stop: Shutdown) {
    let mut reconnect = Reconnect::new(&storage, "requeueing expired leases");
    let period = lease / 2;
    loop {
        match storage.requeue_expired(&keys, lease).await {
            Ok(n) => {
                reconnect.succeeded();
                if n > 0 {
                    tracing::warn!(queue = %keys.queue, jobs = n, "requeued jobs whose worker stopped renewing their lease");
                }
            }
            Err(e) => reconnect.failed(&e).await,
        }
        // Jitter spreads the workers' reapers apart.
        let jitter = period.mul_f64(rand::random::<f64>() * 0.2);
        tokio::select! {
            _ = tokio::time::sleep(period + jitter) => {}
            _ = stop.wait() => return,
        }
    }
}
