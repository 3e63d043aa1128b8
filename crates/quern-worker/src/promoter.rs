//! Promotes delayed jobs and retries to the queue when they are due: sleeps until the next due
//! time, and is woken early when a new one is scheduled (a token on the queue's wake list).

use std::sync::Arc;
use std::time::Duration;

use quern_core::{Broker, Clock, Shutdown};
use tokio::sync::Notify;

use crate::backoff::Reconnect;

/// Longest sleep between two checks, in case a wake token went to another worker that died.
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Promoter<B: Broker> {
    pub broker: B,
    pub queue: B::Queue,
    pub clock: Clock,
    pub woken: Arc<Notify>,
}

impl<B: Broker> Promoter<B> {
    pub(crate) async fn promote(self, stop: Shutdown) {
        let mut reconnect = Reconnect::new(self.broker.describe(), "promoting due jobs");
        loop {
            let sleep = match self.promote_once().await {
                Ok(sleep) => {
                    reconnect.succeeded();
                    sleep
                }
                Err(e) => {
                    reconnect.failed(&e).await;
                    continue;
                }
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.woken.notified() => {}
                _ = stop.wait() => return,
            }
        }
    }

    /// Moves what is due now; returns how long to sleep before the next check.
    pub(crate) async fn promote_once(&self) -> Result<Duration, B::Error> {
        let now = self.clock.now_ms();
        let promoted = self.broker.promote_due(&self.queue, now).await?;
        Ok(match promoted.next_due_ms {
            Some(due) => Duration::from_millis(due.saturating_sub(now)).min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }

    /// Blocks on the queue's wake-ups (its own connection) and wakes the promoter.
    pub(crate) async fn listen(self) {
        let mut reconnect = Reconnect::new(self.broker.describe(), "waiting for scheduled jobs");
        let mut waiter = loop {
            match self.broker.waiter(MAX_SLEEP).await {
                Ok(w) => break w,
                Err(e) => reconnect.failed(&e).await,
            }
        };
        loop {
            match self
                .broker
                .wait_for_wake(&mut waiter, &self.queue, MAX_SLEEP)
                .await
            {
                Ok(true) => self.woken.notify_one(),
                Ok(false) => reconnect.succeeded(),
                Err(e) => reconnect.failed(&e).await,
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
    async fn due_jobs_move_when_the_clock_reaches_them_not_before() {
        let broker = MemoryBroker::new();
        let queue = broker.queue("promote").unwrap();
        let manual = ManualClock::at(1_000_000);
        let promoter = Promoter {
            broker: broker.clone(),
            queue: queue.clone(),
            clock: manual.clock(),
            woken: Arc::new(Notify::new()),
        };
        broker
            .schedule(&queue, &[(1_000_400, "{\"job\":\"a\",\"payload\":1}".into())])
            .await
            .unwrap();
        assert_eq!(
            promoter.promote_once().await.unwrap(),
            Duration::from_millis(400),
            "sleeps until due"
        );
        assert_eq!(broker.stats("promote").pending, 0);
        manual.advance(Duration::from_millis(399));
        assert_eq!(promoter.promote_once().await.unwrap(), Duration::from_millis(1));
        manual.advance(Duration::from_millis(1));
        assert_eq!(
            promoter.promote_once().await.unwrap(),
            MAX_SLEEP,
            "nothing left: the longest sleep"
        );
        assert_eq!(broker.stats("promote").pending, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_wakes_the_listener_at_once() {
        let broker = MemoryBroker::new();
        let queue = broker.queue("wake").unwrap();
        let woken = Arc::new(Notify::new());
        let promoter = Promoter {
            broker: broker.clone(),
            queue: queue.clone(),
            clock: ManualClock::at(0).clock(),
            woken: woken.clone(),
        };
        let listener = tokio::spawn(promoter.listen());
        let notified = woken.notified();
        broker.schedule(&queue, &[(5, "{}".into())]).await.unwrap();
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .expect("woken");
        assert!(
            started.elapsed() < MAX_SLEEP,
            "woken by the schedule, not by the periodic check"
        );
        listener.abort();
    }
}
