//! The time jetwire stamps and filters by: when a letter failed, what
//! `Filter::within` means by "the last hour", and `TestApp`'s virtual
//! time. A [`ManualClock`] lets a test set it and move it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Where jetwire reads the time of day. [`SystemClock`] unless an app or
/// `TestApp` is given another ([`ConfigBuilder::clock`](crate::ConfigBuilder::clock),
/// [`TestApp::clock`](crate::testing::TestApp::clock)).
///
/// ```
/// use std::time::SystemTime;
/// use jetwire::clock::Clock;
///
/// /// A clock ten minutes fast.
/// struct Fast;
///
/// impl Clock for Fast {
///     fn now(&self) -> SystemTime {
///         SystemTime::now() + std::time::Duration::from_secs(600)
///     }
/// }
///
/// assert!(Fast.now() > SystemTime::now());
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> SystemTime;
}

/// The system's clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until it is set or moved; clones share one
/// time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use jetwire::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// let seen = clock.clone();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(seen.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: SystemTime) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    /// Sets the time to `at` (earlier times too).
    pub fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves the time on by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The clock an app reads, shared by everything that reads it.
#[derive(Clone)]
pub(crate) struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    pub(crate) fn new(clock: impl Clock) -> SharedClock {
        SharedClock(Arc::new(clock))
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.0.now()
    }
}

impl Default for SharedClock {
    fn default() -> SharedClock {
        SharedClock::new(SystemClock)
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
