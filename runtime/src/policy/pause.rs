//! The pause after a failure, shared by every loop that talks to the
//! server: short at first, doubling while failures follow each other,
//! with jitter so that replicas do not retry in lockstep after a server
//! restart.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The first pause after an answer from the server.
const FIRST: Duration = Duration::from_millis(100);
/// The longest pause.
const MOST: Duration = Duration::from_secs(5);

/// How long to wait before the next try. Each pause is drawn from the
/// upper half of its step (`step / 2 ..= step`); the step doubles from
/// 100 ms up to 5 s with each failure in a row, and [`RetryPause::reset`]
/// starts it over (any answer from the server, or a new connection).
///
/// Every loop of jetwire's that retries the server waits by it; a
/// [`Service`](crate::Service) that retries something can too.
///
/// ```
/// use std::time::Duration;
///
/// let mut pause = jetwire::RetryPause::new();
/// let first = pause.after_failure();
/// assert!(first <= Duration::from_millis(100));
/// pause.after_failure();
/// pause.reset(); // it worked: the next failure waits the least again
/// assert!(pause.after_failure() <= Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct RetryPause {
    step: Duration,
    /// xorshift64 state; never 0.
    seed: u64,
}

impl Default for RetryPause {
    fn default() -> Self {
        RetryPause::new()
    }
}

impl RetryPause {
    /// A pause whose jitter is seeded from the process's random state.
    pub fn new() -> RetryPause {
        RetryPause::seeded(RandomState::new().hash_one(0u8))
    }

    pub(crate) fn seeded(seed: u64) -> RetryPause {
        RetryPause {
            step: FIRST,
            seed: seed | 1,
        }
    }

    /// The pause before the next try, after a failure; the one after it
    /// is longer.
    pub fn after_failure(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(MOST);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.random() % nanos.saturating_add(1))
    }

    /// The server answered: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.step = FIRST;
    }

    fn random(&mut self) -> u64 {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_most_within_jitter() {
        let mut pause = RetryPause::seeded(7);
        let mut step = FIRST;
        for _ in 0..10 {
            let p = pause.after_failure();
            assert!(p >= step / 2 && p <= step, "{p:?} outside {step:?}");
            step = (step * 2).min(MOST);
        }
        assert_eq!(step, MOST);
    }

    #[test]
    fn reset_starts_over() {
        let mut pause = RetryPause::seeded(3);
        for _ in 0..6 {
            pause.after_failure();
        }
        pause.reset();
        assert!(pause.after_failure() <= FIRST);
    }

    #[test]
    fn replicas_do_not_pause_in_lockstep() {
        let draws = |seed| {
            let mut p = RetryPause::seeded(seed);
            (0..8).map(|_| p.after_failure()).collect::<Vec<_>>()
        };
        assert_ne!(draws(1), draws(2));
        let distinct: std::collections::HashSet<_> = (0..8u64)
            .map(|s| RetryPause::seeded(s * 7919).after_failure())
            .collect();
        assert!(distinct.len() > 4, "{distinct:?}");
    }
}
