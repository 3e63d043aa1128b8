//! The watchdog: notices a job whose `run` holds its thread (blocking code in an async job), and
//! says so once per execution, with the job's id and what to do about it.
//!
//! A job polled on the caller's runtime (`Isolation::Task`) that blocks — `std::thread::sleep`,
//! a synchronous client, a long computation — stops every task queued on its thread. The
//! worker's own tasks run on a runtime of their own and keep going; other jobs may not. The
//! watchdog runs with the worker's tasks, so it still runs while a job blocks.
//!
//! Cost per poll: two relaxed atomic stores and a load. Each execution has a slot; while its
//! `run` future is being polled, the slot holds the watchdog's coarse clock at the poll's start
//! (0 when not polled). The watchdog advances that clock every `period` and scans the slots: one
//! whose poll started more than `threshold + period` ago (the clock lags by up to a period) has
//! held its thread for at least `threshold`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quern_core::{JobContext, Shutdown};

/// Watches the executions of one worker.
#[derive(Debug)]
pub(crate) struct Watchdog {
    /// How long one poll may hold its thread before it is reported; `None`: no watchdog.
    threshold: Option<Duration>,
    /// How often the clock advances and the slots are scanned.
    period: Duration,
    start: Instant,
    /// Milliseconds since `start`, plus one (0 means "not polled" in a slot), as of the last scan.
    clock_ms: AtomicU64,
    slots: Mutex<Slots>,
    /// Executions reported.
    blocked: AtomicU64,
}

#[derive(Debug, Default)]
struct Slots {
    taken: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
}

#[derive(Debug)]
struct Slot {
    /// The coarse clock when the poll under way started; 0 between polls.
    polled_since: AtomicU64,
    reported: AtomicBool,
    ctx: Arc<JobContext>,
}

/// One execution's slot; frees it when dropped.
#[derive(Debug)]
pub(crate) struct Watched {
    dog: Arc<Watchdog>,
    slot: Arc<Slot>,
    index: usize,
}

impl Watchdog {
    pub(crate) fn new(threshold: Option<Duration>) -> Self {
        let period = threshold
            .map(|t| (t / 4).clamp(Duration::from_millis(5), Duration::from_millis(250)))
            .unwrap_or(Duration::from_secs(1));
        Self {
            threshold,
            period,
            start: Instant::now(),
            clock_ms: AtomicU64::new(1),
            slots: Mutex::default(),
            blocked: AtomicU64::new(0),
        }
    }

    /// Executions found holding their thread past the threshold.
    pub(crate) fn blocked(&self) -> u64 {
        self.blocked.load(Relaxed)
    }

    /// A slot for the execution of `ctx`, or `None` when the watchdog is off.
    pub(crate) fn watch(self: &Arc<Self>, ctx: &Arc<JobContext>) -> Option<Watched> {
        self.threshold?;
        let slot = Arc::new(Slot {
            polled_since: AtomicU64::new(0),
            reported: AtomicBool::new(false),
            ctx: ctx.clone(),
        });
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let index = match slots.free.pop() {
            Some(i) => {
                slots.taken[i] = Some(slot.clone());
                i
            }
            None => {
                slots.taken.push(Some(slot.clone()));
                slots.taken.len() - 1
            }
        };
        Some(Watched {
            dog: self.clone(),
            slot,
            index,
        })
    }

    /// Every `period` until `stop`: advances the clock, reports executions held too long.
    pub(crate) async fn run(self: Arc<Self>, stop: Shutdown) {
        let Some(threshold) = self.threshold else {
            return;
        };
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => return,
            }
            self.scan(threshold);
        }
    }

    /// One round: advance the clock, then report (once each) the slots held too long.
    fn scan(&self, threshold: Duration) {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        self.clock_ms.store(now, Relaxed);
        let limit = (threshold + self.period).as_millis() as u64;
        let mut held = Vec::new();
        {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for slot in slots.taken.iter().flatten() {
                let since = slot.polled_since.load(Relaxed);
                if since != 0 && now - since.min(now) > limit && !slot.reported.swap(true, Relaxed) {
                    held.push((slot.ctx.clone(), now - since));
                }
            }
        }
        for (ctx, ms) in held {
            self.blocked.fetch_add(1, Relaxed);
            tracing::warn!(job = %ctx.id, name = %ctx.name, queue = %ctx.queue, attempt = ctx.attempt,
                held_ms = ms, threshold_ms = threshold.as_millis() as u64,
                "a job has held its thread without yielding (blocking code in an async job?): other jobs on that thread wait meanwhile; \
                 move the blocking part into `tokio::task::spawn_blocking`, or give the job `Isolation::Runtime` (a thread of its own)");
        }
    }
}

impl Watched {
    /// A poll of the job's `run` starts.
    pub(crate) fn polling(&self) {
        self.slot
            .polled_since
            .store(self.dog.clock_ms.load(Relaxed), Relaxed);
    }

    /// The poll returned.
    pub(crate) fn polled(&self) {
        self.slot.polled_since.store(0, Relaxed);
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut slots = self.dog.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.taken[self.index] = None;
        slots.free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use quern_core::JobId;

    use super::*;

    fn ctx(id: &str) -> Arc<JobContext> {
        Arc::new(JobContext::new(JobId::from(id.to_owned()), "blocker", "q", 1))
    }

    #[test]
    fn a_poll_held_past_the_threshold_is_reported_once_and_a_short_one_never() {
        let dog = Arc::new(Watchdog::new(Some(Duration::from_millis(40))));
        let long = dog.watch(&ctx("long")).unwrap();
        let short = dog.watch(&ctx("short")).unwrap();
        dog.scan(Duration::from_millis(40));
        long.polling();
        short.polling();
        std::thread::sleep(Duration::from_millis(20));
        short.polled();
        dog.scan(Duration::from_millis(40));
        assert_eq!(dog.blocked(), 0, "not yet past the threshold");
        std::thread::sleep(Duration::from_millis(60));
        dog.scan(Duration::from_millis(40));
        dog.scan(Duration::from_millis(40));
        assert_eq!(dog.blocked(), 1, "the long poll, once");
        long.polled();
        drop(long);
        drop(short);
        assert_eq!(dog.slots.lock().unwrap().free.len(), 2, "slots are reused");
    }

    #[test]
    fn many_short_polls_add_up_to_nothing() {
        let dog = Arc::new(Watchdog::new(Some(Duration::from_millis(30))));
        let w = dog.watch(&ctx("yielding")).unwrap();
        for _ in 0..10 {
            w.polling();
            std::thread::sleep(Duration::from_millis(10));
            w.polled();
            dog.scan(Duration::from_millis(30));
        }
        assert_eq!(dog.blocked(), 0, "it yields every 10 ms");
    }

    #[test]
    fn off_means_no_slots() {
        let dog = Arc::new(Watchdog::new(None));
        assert!(dog.watch(&ctx("a")).is_none());
    }
}
