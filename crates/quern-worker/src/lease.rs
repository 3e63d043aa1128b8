//! Leases: renewing those of running jobs, and requeueing those that expired.

use std::sync::Arc;
use std::time::Duration;

use quern_core::{Broker, Shutdown};

use crate::backoff::Reconnect;
use crate::in_flight::InFlight;

/// Keeps one queue's leases: this worker's (renewed) and every dead worker's (requeued).
#[derive(Clone)]
pub(crate) struct Keeper<B: Broker> {
    pub broker: B,
    pub queue: B::Queue,
    pub name: Arc<str>,
    pub consumer: String,
    pub in_flight: Arc<InFlight>,
    pub lease: Duration,
}

impl<B: Broker> Keeper<B> {
    /// Every `lease / 3`, renews the leases of this worker's running jobs in one command.
    pub(crate) async fn renew(self, stop: Shutdown) {
        let mut reconnect = Reconnect::new(self.broker.describe(), "renewing leases");
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => return,
            }
            if self.renew_once(&mut reconnect).await.is_err() {
                continue;
            }
        }
    }

    /// One renewal round. A lease found lost is logged once and no longer renewed: its job was
    /// queued again, and this copy's outcome will change nothing when it is written.
    pub(crate) async fn renew_once(&self, reconnect: &mut Reconnect) -> Result<usize, ()> {
        let ids = self.in_flight.ids();
        if ids.is_empty() {
            return Ok(0);
        }
        match self.broker.renew(&self.queue, &self.consumer, &ids).await {
            Ok(kept) => {
                reconnect.succeeded();
                if kept.len() < ids.len() {
                    let kept: std::collections::HashSet<&str> = kept.iter().map(String::as_str).collect();
                    let lost: Vec<&str> = ids
                        .iter()
                        .map(String::as_str)
                        .filter(|id| !kept.contains(id))
                        .collect();
                    tracing::warn!(
                        queue = &*self.name,
                        lost = lost.len(),
                        first = lost[0],
                        "leases expired before renewal; those jobs were queued again and may run twice"
                    );
                    self.in_flight.remove_all(lost);
                }
                Ok(ids.len())
            }
            Err(e) => {
                reconnect.failed(&e).await;
                Err(())
            }
        }
    }

    /// Every `lease / 2`, puts jobs whose lease expired (their worker died) back in the queue.
    pub(crate) async fn reap(self, stop: Shutdown) {
        let mut reconnect = Reconnect::new(self.broker.describe(), "requeueing expired leases");
        let period = self.lease / 2;
        loop {
            match self.broker.requeue_expired(&self.queue, self.lease).await {
                Ok(n) => {
                    reconnect.succeeded();
                    if n > 0 {
                        tracing::warn!(
                            queue = &*self.name,
                            jobs = n,
                            "requeued jobs whose worker stopped renewing their lease"
                        );
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
}

#[cfg(test)]
mod tests {
    use quern_core::broker::memory::MemoryBroker;

    use super::*;

    fn keeper(broker: &MemoryBroker, consumer: &str, lease: Duration) -> Keeper<MemoryBroker> {
        Keeper {
            broker: broker.clone(),
            queue: broker.queue("lease").unwrap(),
            name: "lease".into(),
            consumer: consumer.into(),
            in_flight: Arc::new(InFlight::default()),
            lease,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewed_leases_survive_the_reaper_and_lost_ones_stop_being_renewed() {
        let broker = MemoryBroker::new();
        let lease = Duration::from_secs(3);
        let a = keeper(&broker, "a", lease);
        broker.push(&a.queue, &["{}".into(), "{}".into()]).await.unwrap();
        let got = broker
            .claim(&mut (), &a.queue, "a", 2, Duration::ZERO)
            .await
            .unwrap();
        a.in_flight.insert_all([got[0].entry_id.as_str()]);
        let mut reconnect = Reconnect::new("memory".into(), "test");
        // Two lease periods pass; the first job is renewed every third of one, the second never.
        for _ in 0..6 {
            tokio::time::advance(lease / 3).await;
            assert_eq!(a.renew_once(&mut reconnect).await, Ok(1));
        }
        assert_eq!(
            broker.requeue_expired(&a.queue, lease).await.unwrap(),
            1,
            "only the unrenewed job expired"
        );
        assert_eq!(broker.stats("lease").running, 1);
        // Now the renewer stalls past the lease: the reaper takes the job back...
        tokio::time::advance(lease).await;
        assert_eq!(broker.requeue_expired(&a.queue, lease).await.unwrap(), 1);
        // ...and the next renewal notices, once, and stops renewing it.
        assert_eq!(a.renew_once(&mut reconnect).await, Ok(1));
        assert!(a.in_flight.ids().is_empty(), "a lost lease is no longer renewed");
        assert_eq!(a.renew_once(&mut reconnect).await, Ok(0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_reaper_requeues_on_its_period() {
        let broker = MemoryBroker::new();
        let lease = Duration::from_secs(2);
        let k = keeper(&broker, "a", lease);
        broker.push(&k.queue, &["{}".into()]).await.unwrap();
        broker
            .claim(&mut (), &k.queue, "dead-worker", 1, Duration::ZERO)
            .await
            .unwrap();
        let stop = Shutdown::new();
        let reaper = tokio::spawn(k.clone().reap(stop.clone()));
        tokio::time::sleep(lease / 2).await;
        assert_eq!(broker.stats("lease").pending, 0, "not expired yet");
        tokio::time::sleep(lease * 2).await;
        assert_eq!(broker.stats("lease").pending, 1, "requeued once expired");
        stop.trigger();
        reaper.await.unwrap();
    }
}
