//! Claims jobs for one queue in batches, as many as there are free execution slots, and starts
//! an execution for each.

use std::sync::Arc;
use std::time::Instant;

use quern_core::{Broker, BrokerError, Delivery, Settle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Shared, WorkerConfig};
use crate::backoff::Reconnect;
use crate::in_flight::InFlight;
use crate::lease::Renewals;

/// The longest a claim of a batch waits for a job to arrive: it holds every free slot meanwhile.
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) struct Fetcher<B: Broker> {
    pub broker: B,
    pub queue: B::Queue,
    pub name: Arc<str>,
    pub config: Arc<WorkerConfig>,
    pub semaphore: Arc<Semaphore>,
    pub in_flight: Arc<InFlight>,
    pub settle: mpsc::UnboundedSender<Settle>,
    pub shared: Arc<Shared>,
    pub executions: TaskTracker,
    /// The runtime executions run on: the caller's (the fetcher runs on the worker's own).
    pub runtime: tokio::runtime::Handle,
    pub renewals: Arc<Renewals>,
    /// Whether the queue is paused (kept up to date by its controller).
    pub paused: watch::Receiver<bool>,
}

impl<B: Broker> Fetcher<B> {
    pub(crate) async fn run(self) {
        let stop = self.shared.soft_stop.clone();
        let mut reconnect = Reconnect::new(self.broker.describe(), "reading jobs");
        let mut claimer = loop {
            tokio::select! {
                c = self.broker.claimer(self.config.block) => match c {
                    Ok(c) => break c,
                    Err(e) => reconnect.failed(&e).await,
                },
                _ = stop.wait() => return,
            }
        };
        let mut paused = self.paused.clone();
        // Whether the last claim found nothing. Only a claim of one job blocks for long (up to
        // `block`), holding one execution slot: a claim of a batch holds every free slot, and
        // waits for at most a millisecond, so that an idle queue never keeps the worker's
        // other queues waiting for slots it holds.
        let mut idle = false;
        loop {
            while *paused.borrow_and_update() {
                tokio::select! {
                    changed = paused.changed() => if changed.is_err() { return },
                    _ = stop.wait() => return,
                }
            }
            let first = tokio::select! {
                p = self.semaphore.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = stop.wait() => return,
            };
            let mut permits = vec![first];
            let (want, block) = if idle {
                (1, self.config.block)
            } else {
                (self.config.batch, BATCH_WAIT)
            };
            while permits.len() < want {
                match self.semaphore.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let claim = self.broker.claim(
                &mut claimer,
                &self.queue,
                &self.config.consumer,
                permits.len(),
                block,
            );
            let claimed = tokio::select! {
                r = claim => r,
                // Anything handed to this consumer after this point is given back at shutdown.
                _ = stop.wait() => return,
            };
            match claimed {
                Ok(deliveries) => {
                    reconnect.succeeded();
                    idle = deliveries.is_empty();
                    let tokens = self.in_flight.insert_deliveries(&deliveries);
                    let claimed_at = Instant::now();
                    let batch: Vec<_> = deliveries
                        .into_iter()
                        .zip(tokens)
                        .map(|(d, cancel)| {
                            (
                                d,
                                cancel,
                                permits.pop().expect("never more deliveries than permits"),
                            )
                        })
                        .collect();
                    self.start(batch, claimed_at);
                }
                Err(e) => {
                    if e.needs_prepare() && self.broker.prepare(&self.queue).await.is_ok() {
                        // Redis lost the group (restarted without persistence, or keys deleted):
                        // recreated, so read again at once.
                        tracing::warn!(queue = %self.name, "the consumer group was missing (Redis restarted without persistence?); recreated it");
                        continue;
                    }
                    drop(permits);
                    tokio::select! {
                        _ = reconnect.failed(&e) => {}
                        _ = stop.wait() => return,
                    }
                }
            }
        }
    }

    /// Starts a claimed batch's executions on the executions' runtime. One task crosses over per
    /// batch, and spawns the executions from there: a spawn from inside a runtime goes to its
    /// thread's own queue, while one from outside takes a lock and may wake a thread each time
    /// (measured on the `process` benchmark: each execution crossing over alone cost about 13%
    /// of its throughput; one crossing per batch costs nothing measurable).
    fn start(&self, batch: Vec<(Delivery, CancellationToken, OwnedSemaphorePermit)>, claimed_at: Instant) {
        let starter = Starter {
            shared: self.shared.clone(),
            queue: self.name.clone(),
            settle: self.settle.clone(),
            in_flight: self.in_flight.clone(),
            renewals: self.renewals.clone(),
            executions: self.executions.clone(),
        };
        self.executions.spawn_on(
            async move {
                for (delivery, cancel, permit) in batch {
                    starter.spawn(delivery, cancel, permit, claimed_at);
                }
            },
            &self.runtime,
        );
    }
}

/// What an execution needs from its fetcher, on the executions' runtime.
struct Starter {
    shared: Arc<Shared>,
    queue: Arc<str>,
    settle: mpsc::UnboundedSender<Settle>,
    in_flight: Arc<InFlight>,
    renewals: Arc<Renewals>,
    executions: TaskTracker,
}

impl Starter {
    /// Spawns one execution on the current runtime.
    fn spawn(
        &self,
        delivery: Delivery,
        cancel: CancellationToken,
        permit: OwnedSemaphorePermit,
        claimed_at: Instant,
    ) {
        let shared = self.shared.clone();
        let queue = self.queue.clone();
        let tx = self.settle.clone();
        let in_flight = self.in_flight.clone();
        let renewals = self.renewals.clone();
        let execution = async move {
            // A delivery whose lease ran out before it could start (the process was frozen, or
            // renewals failed) has been, or is about to be, queued again by a reaper: running it
            // now would run it twice at once.
            if !renewals.still_leased(claimed_at, shared.lease, &in_flight, &delivery.entry_id) {
                shared
                    .counters
                    .stale
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(queue = &*queue, entry = %delivery.entry_id, waited_ms = claimed_at.elapsed().as_millis() as u64,
                    "a claimed job's lease ran out before it could start (no renewal kept it); not run here (it runs again from its queue)");
                in_flight.remove_all([delivery.entry_id.as_str()]);
                drop(permit);
                return;
            }
            let op = crate::pipeline::process(&shared, &queue, delivery, cancel).await;
            drop(permit);
            // `None`: cancelled by shutdown; the job stays leased until released to its queue.
            if let Some(op) = op {
                // The settler outlives every execution; a send only fails if it panicked.
                let _ = tx.send(op);
            }
        };
        self.executions.spawn(execution);
    }
}
