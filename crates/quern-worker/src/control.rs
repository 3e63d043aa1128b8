//! Polls each queue's controls: a pause stops the queue's fetcher from claiming (jobs keep
//! arriving and wait), a cancel fires the cancellation signal of a job this worker runs.
//!
//! One poll per queue every [`WorkerConfig::control_poll`](crate::WorkerConfig::control_poll)
//! (one round trip: `EXISTS` on the pause key and `MGET` on the cancel keys of the jobs held),
//! off the claiming path: claiming costs nothing more than reading a flag.

use std::sync::Arc;
use std::time::Duration;

use quern_core::{Broker, ErrorChain, Shutdown};
use tokio::sync::watch;

use crate::in_flight::InFlight;

pub(crate) struct Controller<B: Broker> {
    pub broker: B,
    pub queue: B::Queue,
    pub name: Arc<str>,
    pub in_flight: Arc<InFlight>,
    pub every: Duration,
    pub paused: watch::Sender<bool>,
}

impl<B: Broker> Controller<B> {
    /// Polls once: updates the pause flag and cancels what was cancelled.
    pub(crate) async fn poll(&self) -> Result<(), B::Error> {
        let held = self.in_flight.jobs(&self.name);
        let ids: Vec<String> = held.iter().map(|(_, id)| id.clone()).collect();
        let control = self.broker.control(&self.queue, &ids).await?;
        let changed = self.paused.send_if_modified(|paused| {
            let changed = *paused != control.paused;
            *paused = control.paused;
            changed
        });
        if changed {
            if control.paused {
                tracing::info!(
                    queue = &*self.name,
                    "queue paused: claiming nothing from it until it is resumed"
                );
            } else {
                tracing::info!(queue = &*self.name, "queue resumed");
            }
        }
        for id in &control.cancelled {
            for (entry, _) in held.iter().filter(|(_, held)| held == id) {
                if self.in_flight.cancel(entry) {
                    tracing::info!(queue = &*self.name, job.id = %id, "a running job was cancelled; stopping it");
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn run(self, stop: Shutdown) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                () = stop.wait() => return,
            }
            match self.poll().await {
                Ok(()) => failing = false,
                Err(e) => {
                    // Said once per outage: the fetcher and settler report the connection too.
                    if !failing {
                        tracing::warn!(queue = &*self.name, error = %ErrorChain::of(&e),
                            "could not read the queue's pause and cancel controls; trying again");
                    }
                    failing = true;
                }
            }
        }
    }
}
