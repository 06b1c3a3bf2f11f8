//! How many messages a handler's loop asks for, holds, and lets the
//! server leave unacknowledged.

/// The fewest and most messages one pull asks for.
const MIN_BATCH: usize = 8;
const MAX_BATCH: usize = 1024;
/// How many replicas of an app `max_ack_pending` leaves room for at full speed.
const REPLICAS_AT_FULL_SPEED: usize = 4;
/// The most bytes one pull asks for, so large payloads pull fewer at a
/// time; more only where the server takes larger messages ([`Sizing::max_bytes`]).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Room for a message's subject and headers beside its payload.
const MESSAGE_OVERHEAD: usize = 64 << 10;

/// The sizes that follow from a handler's `concurrency`.
///
/// ```text
/// batch              16 × concurrency, within 8..=1024
/// places             concurrency + batch     messages in the loop or in tasks
/// held_at_most       concurrency + 2 × batch places, plus one batch pulled ahead
/// max_ack_pending    4 × held_at_most (1 for concurrency = 1, which keeps order)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// Calls in flight.
    pub(crate) concurrency: usize,
    /// Messages asked for per pull. Each pull costs the server a request,
    /// so small pulls cost more than the handlers; the held messages wait
    /// in tasks that keep them alive with progress.
    pub(crate) batch: usize,
}

impl Sizing {
    pub(crate) fn of(concurrency: u32) -> Sizing {
        let concurrency = concurrency.max(1) as usize;
        Sizing {
            concurrency,
            batch: (concurrency * 16).clamp(MIN_BATCH, MAX_BATCH),
        }
    }

    /// Places for pulled messages: each one taken holds one until settled.
    pub(crate) fn places(&self) -> usize {
        self.concurrency + self.batch
    }

    /// The most messages one process holds for a handler: running, waiting
    /// for a slot, and pulled but not yet taken from the subscription.
    pub(crate) fn held_at_most(&self) -> usize {
        self.places() + self.batch
    }

    /// The most bytes one pull asks for, given the server's `max_payload`:
    /// 8 MiB, or enough for the largest message the server takes, which
    /// otherwise could never be delivered.
    pub(crate) fn max_bytes(max_payload: usize) -> usize {
        MAX_BATCH_BYTES.max(max_payload.saturating_add(MESSAGE_OVERHEAD))
    }

    /// The consumer's `max_ack_pending`: 1 keeps a `concurrency = 1`
    /// handler in order across replicas; otherwise what four replicas may
    /// hold at once, so the server never holds back a pull the loop asked for.
    pub(crate) fn max_ack_pending(&self) -> i64 {
        if self.concurrency <= 1 {
            return 1;
        }
        i64::try_from(self.held_at_most() * REPLICAS_AT_FULL_SPEED).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_concurrency() {
        let one = Sizing::of(1);
        assert_eq!(
            (one.batch, one.places(), one.max_ack_pending()),
            (16, 17, 1)
        );
        let s = Sizing::of(16);
        assert_eq!(s.batch, 256);
        assert_eq!(s.held_at_most(), 16 + 2 * 256);
        assert_eq!(s.max_ack_pending(), 4 * (16 + 2 * 256));
        assert_eq!(Sizing::of(1000).batch, MAX_BATCH);
        assert_eq!(Sizing::of(0), Sizing::of(1));
    }

    #[test]
    fn a_pull_asks_for_room_for_the_largest_message() {
        assert_eq!(Sizing::max_bytes(1 << 20), MAX_BATCH_BYTES);
        assert!(Sizing::max_bytes(64 << 20) > 64 << 20);
        assert!(Sizing::max_bytes(usize::MAX) >= MAX_BATCH_BYTES);
    }
}
