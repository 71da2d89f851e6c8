//! Retry delays: exponential in the attempt number, capped, with jitter so
//! that a burst of failures does not come back as a burst of retries.
//!
//! Pure: the random source is passed in, so the schedule can be tested.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failed attempt, before jitter.
    pub base: Duration,
    /// No delay exceeds this, jitter included.
    pub cap: Duration,
    /// Fraction of the delay added or removed at random, in `[0, 1)`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(10), cap: Duration::from_secs(60 * 60), jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay before jitter after `attempt` failed attempts (1-based):
    /// `base * 2^(attempt-1)`, capped.
    pub fn nominal(&self, attempt: i32) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        self.base.saturating_mul(1u32 << exponent).min(self.cap)
    }

    /// The range a jittered delay for `attempt` falls in.
    pub fn bounds(&self, attempt: i32) -> (Duration, Duration) {
        let nominal = self.nominal(attempt).as_secs_f64();
        let lo = Duration::from_secs_f64(nominal * (1.0 - self.jitter));
        let hi = Duration::from_secs_f64(nominal * (1.0 + self.jitter)).min(self.cap);
        (lo.min(hi), hi)
    }

    /// A jittered delay for `attempt`, drawn from `rng`.
    pub fn delay(&self, attempt: i32, rng: &mut impl Rng) -> Duration {
        let (lo, hi) = self.bounds(attempt);
        if hi <= lo {
            return lo;
        }
        Duration::from_secs_f64(rng.random_range(lo.as_secs_f64()..=hi.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff { base: Duration::from_secs(10), cap: Duration::from_secs(100), jitter: 0.0 };
        let schedule: Vec<u64> = (1..=6).map(|a| b.nominal(a).as_secs()).collect();
        assert_eq!(schedule, [10, 20, 40, 80, 100, 100]);
        assert_eq!(b.nominal(1000), Duration::from_secs(100));
    }

    #[test]
    fn jitter_stays_in_bounds_and_varies() {
        let b = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..=20 {
            let (lo, hi) = b.bounds(attempt);
            let draws: Vec<Duration> = (0..50).map(|_| b.delay(attempt, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d >= lo && *d <= hi), "attempt {attempt}");
            assert!(draws.iter().all(|d| *d <= b.cap));
            assert!(draws.windows(2).any(|w| w[0] != w[1]), "no jitter at attempt {attempt}");
        }
    }
}
