//! How long to wait before the next attempt.

use std::time::Duration;

use rand::Rng;

/// Backoff between a retryable failure and the next attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same delay every time.
    Fixed(Duration),
    /// `base * factor^(attempt-1)`, capped at `max`, then spread by up to `jitter` (0.0-1.0) of
    /// itself so that jobs failing together do not retry together.
    Exponential {
        /// The delay after the first failure.
        base: Duration,
        /// Growth per attempt.
        factor: f64,
        /// The longest delay.
        max: Duration,
        /// Fraction of the delay added at random, 0.0 for none.
        jitter: f64,
    },
}

impl Default for Backoff {
    /// Exponential from 1 s, doubling, capped at 1 h, with 20% jitter.
    fn default() -> Self {
        Backoff::Exponential {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// Exponential backoff from `base`, doubling, capped at `max`, with 20% jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff::Exponential {
            base,
            factor: 2.0,
            max,
            jitter: 0.2,
        }
    }

    /// The delay after failed attempt number `attempt` (1 for the first execution).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::rng().random::<f64>())
    }

    /// [`delay`](Self::delay) with the jitter drawn by the caller: `unit` in `[0, 1)` picks how
    /// much of the jitter is added (0 for none, so the result is exact).
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Exponential {
                base,
                factor,
                max,
                jitter,
            } => {
                let exp = attempt.saturating_sub(1).min(64) as i32;
                let raw = base.as_secs_f64() * factor.max(1.0).powi(exp);
                let capped = raw.min(max.as_secs_f64());
                let spread = if jitter > 0.0 {
                    capped * jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                Duration::from_secs_f64((capped + spread).max(0.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_grows_and_caps() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(60), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(10));
        for _ in 0..200 {
            let d = b.delay(1);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_millis(1200),
                "{d:?}"
            );
        }
    }
}
