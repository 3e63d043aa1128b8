//! Leases: renewing those of running jobs, requeueing those that expired, and telling whether a
//! claimed job that has not started yet still holds its lease.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

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
    pub renewals: Arc<Renewals>,
}

/// When this worker last had every lease it holds on a queue confirmed (std time: compared
/// across the worker's runtime and the executions' one).
#[derive(Debug)]
pub(crate) struct Renewals {
    start: Instant,
    /// Nanoseconds after `start` at which the ids of the latest round that kept every lease
    /// were read; 0 before the first.
    kept_all_at: AtomicU64,
}

impl Default for Renewals {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            kept_all_at: AtomicU64::new(0),
        }
    }
}

impl Renewals {
    /// Every lease held at `read_at` (when the renewed ids were read) was renewed.
    fn kept_all(&self, read_at: Instant) {
        let at = read_at.saturating_duration_since(self.start).as_nanos() as u64;
        self.kept_all_at.fetch_max(at.max(1), Relaxed);
    }

    fn last(&self) -> Option<Instant> {
        match self.kept_all_at.load(Relaxed) {
            0 => None,
            n => Some(self.start + Duration::from_nanos(n)),
        }
    }

    /// Whether a delivery claimed at `claimed_at` still holds its lease, so it may start. Its
    /// lease runs from the claim, or from the last renewal round that kept every lease after the
    /// claim, if the job was not found lost since (`in_flight` still holds it).
    ///
    /// The common case costs one clock read: the claim is less than a lease old. Only a delivery
    /// that waited longer (its executions' runtime was blocked, or the process frozen) looks
    /// further. While the worker's own runtime runs, renewals keep such a delivery's lease, and it
    /// starts late but once; when they stopped too (a frozen process, the storage unreachable),
    /// another worker may already run the job, and this copy must not start.
    pub(crate) fn still_leased(
        &self,
        claimed_at: Instant,
        lease: Duration,
        in_flight: &InFlight,
        entry_id: &str,
    ) -> bool {
        let now = Instant::now();
        if now.saturating_duration_since(claimed_at) < lease {
            return true;
        }
        match self.last() {
            Some(at) if at > claimed_at && now.saturating_duration_since(at) < lease => {
                in_flight.holds(entry_id)
            }
            _ => false,
        }
    }
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
        // Read before the ids: a delivery claimed before this instant is among them.
        let read_at = Instant::now();
        let ids = self.in_flight.ids();
        if ids.is_empty() {
            self.renewals.kept_all(read_at);
            return Ok(0);
        }
        match self.broker.renew(&self.queue, &self.consumer, &ids).await {
            Ok(kept) => {
                reconnect.succeeded();
                // Gone but settling or settled meanwhile: this worker's own write acked it.
                let lost: Vec<&str> = if kept.len() < ids.len() {
                    let kept: std::collections::HashSet<&str> = kept.iter().map(String::as_str).collect();
                    ids.iter()
                        .map(String::as_str)
                        .filter(|id| !kept.contains(id) && self.in_flight.holds(id))
                        .collect()
                } else {
                    Vec::new()
                };
                if !lost.is_empty() {
                    tracing::warn!(
                        queue = &*self.name,
                        lost = lost.len(),
                        first = lost[0],
                        "leases expired before renewal; those jobs were queued again and may run twice"
                    );
                    self.in_flight.remove_all(lost);
                } else {
                    self.renewals.kept_all(read_at);
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
            renewals: Arc::default(),
        }
    }

    #[test]
    fn a_delivery_older_than_its_lease_starts_only_if_a_renewal_kept_it() {
        let lease = Duration::from_secs(1);
        let now = Instant::now();
        let ago = |d: Duration| now.checked_sub(d).expect("the machine has been up a minute");
        let renewals = Renewals {
            start: ago(Duration::from_secs(60)),
            kept_all_at: AtomicU64::new(0),
        };
        let in_flight = InFlight::default();
        in_flight.insert_all(["1-0"]);
        let leased = |claimed| renewals.still_leased(claimed, lease, &in_flight, "1-0");
        assert!(leased(now), "just claimed");
        let claimed = ago(lease * 3);
        assert!(!leased(claimed), "three leases old, never renewed");
        renewals.kept_all(ago(lease * 4));
        assert!(!leased(claimed), "renewed before the claim: does not count");
        renewals.kept_all(ago(lease * 2));
        assert!(
            !leased(claimed),
            "renewed after the claim, but that lease ran out too"
        );
        renewals.kept_all(ago(lease / 2));
        assert!(leased(claimed), "renewed since: still leased");
        in_flight.remove_all(["1-0"]);
        assert!(
            !leased(claimed),
            "found lost by a round since (no longer in flight): never starts"
        );
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
