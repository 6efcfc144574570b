//! How long to wait before retrying: one type for every retry loop in the
//! framework (a projection's failing event, a consumer's failing message).

use std::time::Duration;

/// Exponential backoff: the first retry waits `initial`, each one after it
/// twice as long, never more than `max`; with jitter (the default), up to
/// half of each pause is taken off at random, so that instances that
/// failed together do not retry in lockstep.
///
/// Built like every options type of the framework: `Default`, then setters
/// named after the setting.
///
/// ```
/// use std::time::Duration;
///
/// use cqrskit::Backoff;
///
/// let backoff = Backoff::default()
///     .initial(Duration::from_millis(50))
///     .max(Duration::from_secs(2))
///     .jitter(false);
/// assert_eq!(backoff.delay(1), Duration::from_millis(50));
/// assert_eq!(backoff.delay(3), Duration::from_millis(200));
/// assert_eq!(backoff.delay(30), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: bool,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 10 s, with jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: true,
        }
    }
}

impl Backoff {
    /// The pause before the first retry.
    #[must_use]
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// The longest pause.
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Whether up to half of each pause is taken off at random.
    #[must_use]
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The pause before the first retry.
    pub fn get_initial(&self) -> Duration {
        self.initial
    }

    /// The longest pause.
    pub fn get_max(&self) -> Duration {
        self.max
    }

    /// Whether pauses are jittered.
    pub fn get_jitter(&self) -> bool {
        self.jitter
    }

    /// The pause before retry `retry` (1 for the first retry, after the
    /// first failure).
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        let full = self
            .initial
            .saturating_mul(1_u32 << doublings)
            .min(self.max.max(self.initial));
        if !self.jitter {
            return full;
        }
        let random = (uuid::Uuid::now_v7().as_u128() & 0xffff) as f64 / f64::from(u16::MAX);
        full.mul_f64(1.0 - 0.5 * random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_jitter_takes_off_at_most_half() {
        let backoff = Backoff::default()
            .initial(Duration::from_millis(100))
            .max(Duration::from_millis(1000));
        for (retry, full_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (29, 1000),
        ] {
            let full = Duration::from_millis(full_ms);
            assert_eq!(backoff.jitter(false).delay(retry), full, "retry {retry}");
            for _ in 0..20 {
                let pause = backoff.delay(retry);
                assert!(
                    pause <= full && pause >= full / 2,
                    "retry {retry}: {pause:?}"
                );
            }
        }
    }

    #[test]
    fn a_cap_below_the_first_pause_does_not_shorten_it() {
        let backoff = Backoff::default()
            .initial(Duration::from_secs(1))
            .max(Duration::from_millis(10))
            .jitter(false);
        assert_eq!(backoff.delay(1), Duration::from_secs(1));
        assert_eq!(backoff.delay(4), Duration::from_secs(1));
    }
}
