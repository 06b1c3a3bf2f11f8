//! The default handler options, the one place both the macros (to check an
//! explicit `backoff` against the default `max_deliver`) and the runtime
//! read them from.
//!
//! ```
//! use jetwire_grammar::defaults;
//!
//! assert_eq!(defaults::MAX_DELIVER, 5);
//! assert_eq!(defaults::backoff(2), [std::time::Duration::from_secs(1)]);
//! ```

use std::time::Duration;

/// Deliveries before a failing message is dead-lettered.
pub const MAX_DELIVER: u32 = 5;

/// Handler calls in flight per process.
pub const CONCURRENCY: u32 = 16;

/// How long the server waits for an ack or progress before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// The delay before each redelivery after a transient error; the last repeats.
pub const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// The default backoff cut to fit `max_deliver`: at most `max_deliver - 1`
/// entries, since only that many redeliveries can follow a failure.
pub fn backoff(max_deliver: u32) -> &'static [Duration] {
    let n = (max_deliver.saturating_sub(1) as usize).min(BACKOFF.len());
    &BACKOFF[..n]
}
