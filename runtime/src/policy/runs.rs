//! Which run of its handler a delivery is.
//!
//! The server counts deliveries, and a message pulled ahead and handed
//! back unrun (at shutdown, on a leader change, a reconnect) is a delivery
//! too. So jetwire keeps, for a message it has handed back, a small record
//! of how many of its deliveries it handed back; and each loop marks the
//! messages whose last allowed run it began, until they are settled. From
//! the server's delivery count, that record and those marks (read only
//! when [`needs_marks`] says so), [`count`] decides:
//!
//! ```text
//! ran     = deliveries − 1 − hand-backs        runs before this delivery
//! ran < max_deliver                            run, as attempt ran + 1
//! ran ≥ max_deliver, last run begun            exhausted: the process died in it
//! ran ≥ max_deliver, last run never begun      run, as the last attempt
//! ```
//!
//! A delivery lost without a hand-back (to a process killed while holding
//! it unstarted) counts as a run; the last-run mark keeps even that from
//! dead-lettering a message whose handler never began its last run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hand-backs of one message the server allows on top of `max_deliver`,
/// after which its max-deliveries advisory dead-letters the message.
pub(crate) const HANDBACKS_ALLOWED: u32 = 20;

/// Pauses ([`HandlerError::pause`]) one message may make without
/// spending a run. Each is a hand-back, so this leaves the other half of
/// [`HANDBACKS_ALLOWED`] to shutdowns and leader changes.
///
/// [`HandlerError::pause`]: crate::HandlerError::pause
pub(crate) const PAUSES_ALLOWED: u32 = HANDBACKS_ALLOWED / 2;

/// Whether a message with `record` may pause once more without
/// spending a run.
pub(crate) fn may_pause(record: Record) -> bool {
    record.handbacks < PAUSES_ALLOWED
}

/// The consumer's `max_deliver` on the server for a handler's `max_deliver`.
pub(crate) fn server_max_deliver(max_deliver: u32) -> u32 {
    max_deliver.max(1).saturating_add(HANDBACKS_ALLOWED)
}

/// What jetwire recorded of one message's deliveries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Deliveries handed back unrun.
    pub(crate) handbacks: u32,
    /// The handler began the last run it is allowed: a loop's mark, or a
    /// record an older jetwire wrote.
    pub(crate) last_begun: bool,
}

impl Record {
    /// The stored form: `h=<hand-backs> last=<0|1> at=<ns>`, where `at` is
    /// when the server stored the message, so that a record left from a
    /// deleted stream whose sequences start over is never read as this
    /// message's.
    pub(crate) fn encode(&self, stored_at: SystemTime) -> String {
        format!(
            "h={} last={} at={}",
            self.handbacks,
            u8::from(self.last_begun),
            nanos(stored_at)
        )
    }

    /// Reads the stored form for a message stored at `stored_at`; anything
    /// else (another message's record, or unreadable) is no record.
    pub(crate) fn decode(bytes: &[u8], stored_at: SystemTime) -> Record {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let mut record = Record::default();
        let mut at = None;
        for field in text.split(' ') {
            match field.split_once('=') {
                Some(("h", n)) => record.handbacks = n.parse().unwrap_or(0),
                Some(("last", b)) => record.last_begun = b == "1",
                Some(("at", t)) => at = t.parse::<u128>().ok(),
                _ => {}
            }
        }
        if at == Some(nanos(stored_at)) {
            record
        } else {
            Record::default()
        }
    }

    /// The record once one more delivery went back unrun.
    pub(crate) fn handed_back(self) -> Record {
        Record {
            handbacks: self.handbacks.saturating_add(1),
            ..self
        }
    }

    /// Whether there is anything to keep.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Record::default()
    }
}

fn nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

/// Runs of a message before its `deliveries`-th delivery.
fn runs_before(deliveries: u32, record: Record) -> u32 {
    deliveries
        .saturating_sub(1)
        .saturating_sub(record.handbacks)
}

/// What to do with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// Run the handler: this is its `attempt`-th run, from 1; a transient
    /// failure on attempt `max_deliver` dead-letters the message.
    Run { attempt: u32 },
    /// The handler began its last run and the message was never settled:
    /// the process died during that run. Dead-letter it as `exhausted`.
    Exhausted,
}

/// Decides on the `deliveries`-th delivery of a message with `record`, for
/// a handler with `max_deliver`.
pub(crate) fn count(deliveries: u32, record: Record, max_deliver: u32) -> Count {
    let max = max_deliver.max(1);
    let ran = runs_before(deliveries, record);
    if ran >= max {
        return if record.last_begun {
            Count::Exhausted
        } else {
            Count::Run { attempt: max }
        };
    }
    if deliveries >= server_max_deliver(max) {
        // The server delivers it no more: whatever its count, this run is
        // the last.
        return Count::Run { attempt: max };
    }
    Count::Run { attempt: ran + 1 }
}

/// Whether a delivery with `record` must look for a mark of its last run
/// begun: one that has had every run `max_deliver` allows, so that
/// [`count`] tells a crash during the last run from a last run never
/// begun.
pub(crate) fn needs_marks(deliveries: u32, record: Record, max_deliver: u32) -> bool {
    runs_before(deliveries, record) >= max_deliver.max(1) && !record.last_begun
}

/// Whether a delivery must have its record read before it runs: every
/// redelivery. A first delivery has none.
pub(crate) fn needs_record(deliveries: u32) -> bool {
    deliveries > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Duration = Duration::from_nanos(1_700_000_000_123_456_789);

    fn rec(handbacks: u32, last_begun: bool) -> Record {
        Record {
            handbacks,
            last_begun,
        }
    }

    #[test]
    fn hand_backs_do_not_use_up_attempts() {
        assert_eq!(count(1, Record::default(), 1), Count::Run { attempt: 1 });
        // Handed back twice at shutdown, then run: still the first run.
        assert_eq!(count(3, rec(2, false), 1), Count::Run { attempt: 1 });
        assert_eq!(count(4, rec(2, false), 5), Count::Run { attempt: 2 });
        assert_eq!(count(5, Record::default(), 5), Count::Run { attempt: 5 });
    }

    #[test]
    fn a_last_run_begun_and_never_settled_is_exhausted() {
        assert_eq!(count(2, rec(0, true), 1), Count::Exhausted);
        assert_eq!(count(6, rec(0, true), 5), Count::Exhausted);
        assert_eq!(count(8, rec(2, true), 5), Count::Exhausted);
    }

    #[test]
    fn a_last_run_never_begun_runs() {
        // Lost unstarted with a killed process: counted as a run, yet the
        // last run still happens.
        assert_eq!(count(2, Record::default(), 1), Count::Run { attempt: 1 });
        assert_eq!(count(9, rec(1, false), 5), Count::Run { attempt: 5 });
    }

    #[test]
    fn only_a_delivery_past_its_runs_looks_for_a_mark() {
        assert!(!needs_marks(1, Record::default(), 1));
        assert!(needs_marks(2, Record::default(), 1));
        // Handed back once: its second delivery is still its first run.
        assert!(!needs_marks(2, rec(1, false), 1));
        assert!(!needs_marks(5, Record::default(), 5));
        assert!(needs_marks(6, Record::default(), 5));
        // A record that says so already needs no marks.
        assert!(!needs_marks(2, rec(0, true), 1));
    }

    #[test]
    fn the_servers_last_delivery_is_the_last_run() {
        let last = server_max_deliver(3);
        assert_eq!(last, 23);
        assert_eq!(
            count(last, rec(last - 1, false), 3),
            Count::Run { attempt: 3 }
        );
        assert_eq!(
            count(last - 1, rec(last - 2, false), 3),
            Count::Run { attempt: 1 }
        );
    }

    #[test]
    fn a_pause_waits_as_the_same_attempt_until_its_room_is_spent() {
        // Paused twice on its first run: the next delivery is still run 1.
        let twice = Record::default().handed_back().handed_back();
        assert!(may_pause(twice));
        assert_eq!(count(3, twice, 3), Count::Run { attempt: 1 });
        assert!(!may_pause(rec(PAUSES_ALLOWED, false)));
        // Every pause taken and the other hand-backs too: the server still
        // delivers the one run.
        let deliveries = PAUSES_ALLOWED + (HANDBACKS_ALLOWED - PAUSES_ALLOWED) + 1;
        assert_eq!(deliveries, server_max_deliver(1));
    }

    #[test]
    fn records_round_trip_for_their_own_message_only() {
        let at = UNIX_EPOCH + AT;
        let r = rec(3, true);
        assert_eq!(Record::decode(r.encode(at).as_bytes(), at), r);
        let other = at + Duration::from_nanos(1);
        assert_eq!(
            Record::decode(r.encode(at).as_bytes(), other),
            Record::default()
        );
        for junk in [&b""[..], b"h=x last=2", b"\xff\xfe", b"h=4294967296 at=1"] {
            assert_eq!(Record::decode(junk, at), Record::default());
        }
        assert!(Record::default().is_empty());
        assert!(needs_record(2) && !needs_record(1));
    }
}
