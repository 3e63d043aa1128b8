//! Wall-clock time, injectable: the worker, the producer and the storage read "now" through a
//! [`Clock`], so retry, schedule and lease logic can run on a [`ManualClock`] in tests.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from. Cheap to clone; the system clock costs one `SystemTime::now()`.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// Milliseconds since the Unix epoch, now.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Source::System => system_ms(),
            Source::Manual(ms) => ms.load(Ordering::Acquire),
        }
    }

    /// Now, as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    /// Whether this is a [`ManualClock`]'s clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.0, Source::Manual(_))
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Manual(ms) => write!(f, "Clock::manual({})", ms.load(Ordering::Relaxed)),
        }
    }
}

/// A clock that moves only when told to, for tests.
///
/// ```
/// use std::time::Duration;
/// use quern_core::clock::ManualClock;
/// let manual = ManualClock::at(1_000);
/// let clock = manual.clock();
/// manual.advance(Duration::from_millis(250));
/// assert_eq!(clock.now_ms(), 1_250);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `ms` since the Unix epoch.
    pub fn at(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }

    /// A clock standing at the system's time now.
    pub fn starting_now() -> Self {
        Self::at(system_ms())
    }

    /// The [`Clock`] to hand to the worker, the producer or the storage.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
    }

    /// Sets the clock (it may move backwards, as a wall clock can).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::Release);
    }

    /// Where it stands.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_moves_and_a_manual_one_does_not() {
        let system = Clock::system();
        assert!(system.now_ms() > 1_600_000_000_000);
        let manual = ManualClock::at(5);
        let clock = manual.clock();
        assert_eq!(clock.now_ms(), 5);
        manual.set(3);
        assert_eq!(clock.now_ms(), 3);
        assert!(clock.is_manual() && !system.is_manual());
    }
}
