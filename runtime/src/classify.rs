//! The retry decision: a pure function from what a handler call did to what
//! happens to the message. The live consume loop and `TestApp` both call
//! [`classify`]; nothing else decides. [`DlqReason`] is its vocabulary for
//! why a message goes to the dead-letter queue.
//!
//! ```
//! use std::time::Duration;
//! use jetwire::classify::{classify, Action, Outcome, Policy};
//! use jetwire::DlqReason;
//!
//! const BACKOFF: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(5)];
//! let policy = Policy { max_deliver: 3, backoff: BACKOFF };
//! assert_eq!(classify(&Outcome::Ok, 1, &policy), Action::Ack);
//! assert_eq!(classify(&Outcome::Transient, 2, &policy), Action::Nak { delay: Duration::from_secs(5) });
//! assert_eq!(classify(&Outcome::Transient, 3, &policy), Action::DeadLetter(DlqReason::Exhausted));
//! assert_eq!(classify(&Outcome::Decode, 1, &policy), Action::DeadLetter(DlqReason::Decode));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    /// The handler returned a permanent error.
    Permanent,
    /// The payload did not decode into the handler's type.
    Decode,
    /// Every delivery failed with a transient error, or the last one never answered.
    Exhausted,
    /// The last delivery panicked.
    Panic,
    /// The last delivery ran past the handler's `timeout`.
    Timeout,
}

impl DlqReason {
    /// The name written to `Jetwire-Dlq-Reason`.
    ///
    /// ```
    /// assert_eq!(jetwire::DlqReason::Exhausted.as_str(), "exhausted");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::Permanent => "permanent",
            DlqReason::Decode => "decode",
            DlqReason::Exhausted => "exhausted",
            DlqReason::Panic => "panic",
            DlqReason::Timeout => "timeout",
        }
    }
}

impl fmt::Display for DlqReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason name that is not one of [`DlqReason`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dead-letter reason `{0}`; expected permanent, decode, exhausted, panic or timeout"
)]
pub struct UnknownReason(pub String);

impl FromStr for DlqReason {
    type Err = UnknownReason;

    /// ```
    /// assert_eq!("panic".parse(), Ok(jetwire::DlqReason::Panic));
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "permanent" => DlqReason::Permanent,
            "decode" => DlqReason::Decode,
            "exhausted" => DlqReason::Exhausted,
            "panic" => DlqReason::Panic,
            "timeout" => DlqReason::Timeout,
            other => return Err(UnknownReason(other.to_owned())),
        })
    }
}

/// What one handler call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It returned `Ok`.
    Ok,
    /// It returned a transient error.
    Transient,
    /// It returned [`HandlerError::retry_after`](crate::HandlerError::retry_after).
    RetryAfter(Duration),
    /// It returned a permanent error.
    Permanent,
    /// The payload did not decode; the handler was not called.
    Decode,
    /// It panicked.
    Panic,
    /// It ran past its `timeout`.
    Timeout,
    /// It returned [`HandlerError::discard`](crate::HandlerError::discard):
    /// drop the message on purpose.
    Discard,
}

/// The handler's retry options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Deliveries before dead-lettering (at least 1).
    pub max_deliver: u32,
    /// The delay before each redelivery; the last repeats. Empty: no delay.
    pub backoff: &'static [Duration],
}

impl Policy {
    /// The delay before redelivering after failed delivery `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        backoff_delay(self.backoff, attempt)
    }
}

/// The wait after failed try `attempt` (1-based) of a backoff list: its
/// entry for that try, the last one repeating; none for an empty list.
/// The rule of handlers' `backoff`, for anything else that retries by a
/// list (the outbox relay).
///
/// ```
/// use std::time::Duration;
/// use jetwire::classify::backoff_delay;
///
/// let backoff = [Duration::from_secs(1), Duration::from_secs(30)];
/// assert_eq!(backoff_delay(&backoff, 1), Duration::from_secs(1));
/// assert_eq!(backoff_delay(&backoff, 5), Duration::from_secs(30));
/// assert_eq!(backoff_delay(&[], 2), Duration::ZERO);
/// ```
pub fn backoff_delay(backoff: &[Duration], attempt: u32) -> Duration {
    let i = (attempt.max(1) - 1) as usize;
    backoff
        .get(i)
        .or(backoff.last())
        .copied()
        .unwrap_or(Duration::ZERO)
}

/// What to do with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge: done.
    Ack,
    /// Negative-acknowledge: the server redelivers after `delay`.
    Nak {
        /// How long the server waits before redelivering.
        delay: Duration,
    },
    /// Copy to the dead-letter queue, then terminate.
    DeadLetter(DlqReason),
    /// Terminate without a dead letter: the handler dropped it on purpose.
    Discard,
}

/// Decides what happens to a message after delivery `attempt` (1-based) of
/// `max_deliver` ended with `outcome`.
pub fn classify(outcome: &Outcome, attempt: u32, policy: &Policy) -> Action {
    let last = attempt >= policy.max_deliver;
    match *outcome {
        Outcome::Ok => Action::Ack,
        Outcome::Discard => Action::Discard,
        Outcome::Permanent => Action::DeadLetter(DlqReason::Permanent),
        Outcome::Decode => Action::DeadLetter(DlqReason::Decode),
        Outcome::Transient | Outcome::RetryAfter(_) if last => {
            Action::DeadLetter(DlqReason::Exhausted)
        }
        Outcome::Panic if last => Action::DeadLetter(DlqReason::Panic),
        Outcome::Timeout if last => Action::DeadLetter(DlqReason::Timeout),
        Outcome::RetryAfter(delay) => Action::Nak { delay },
        Outcome::Transient | Outcome::Panic | Outcome::Timeout => Action::Nak {
            delay: policy.delay(attempt),
        },
    }
}

/// How a classified delivery is answered on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Ack,
    Nak(Duration),
    Term,
    /// Acknowledged before the call ended: nothing more is sent.
    Already,
}

/// What a settled delivery counts as, in the handler's counters, metrics
/// and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Acked,
    Retried,
    DeadLettered(DlqReason),
    /// A handler of dead letters gave up on one: no letter of a letter.
    GaveUp(DlqReason),
    Discarded,
    /// The call failed after its message was acknowledged: never retried.
    FailedAfterAck,
}

/// Who acknowledged a delivery before its call ended, if anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// Nobody: the call's result decides.
    No,
    /// jetwire, before the call (`ack = "first"`): a failure is still
    /// dead-lettered, with its reason.
    First,
    /// The handler, with `ctx.ack()`: a later failure is only logged and
    /// counted.
    ByHandler,
}

/// What to remove of what a message kept (its checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Nothing: it runs again, and resumes.
    Stays,
    /// What this run saved or read: it is done.
    IfUsed,
    /// Whatever any run saved: it leaves as a letter or discarded, maybe
    /// after runs elsewhere.
    Always,
}

/// Everything done with a delivery once its [`Action`] is known: the one
/// plan the live loop carries out and `TestApp` plays in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settlement {
    /// A dead letter to store first: the answer waits for its ack (and is
    /// a nak, if it cannot be stored).
    pub(crate) letter: Option<DlqReason>,
    pub(crate) answer: Answer,
    pub(crate) counted: Counted,
    pub(crate) kept: Kept,
    /// The message leaves its durable: its delivery record goes too.
    pub(crate) leaves: bool,
}

/// The plan for `action`, for a handler that reads dead letters or not.
pub(crate) fn settlement(action: Action, reads_dead_letters: bool) -> Settlement {
    let leaving = |letter, counted, kept| Settlement {
        letter,
        answer: Answer::Term,
        counted,
        kept,
        leaves: true,
    };
    match action {
        Action::Ack => Settlement {
            letter: None,
            answer: Answer::Ack,
            counted: Counted::Acked,
            kept: Kept::IfUsed,
            leaves: true,
        },
        Action::Nak { delay } => Settlement {
            letter: None,
            answer: Answer::Nak(delay),
            counted: Counted::Retried,
            kept: Kept::Stays,
            leaves: false,
        },
        Action::Discard => leaving(None, Counted::Discarded, Kept::Always),
        Action::DeadLetter(reason) if reads_dead_letters => {
            leaving(None, Counted::GaveUp(reason), Kept::Always)
        }
        Action::DeadLetter(reason) => {
            leaving(Some(reason), Counted::DeadLettered(reason), Kept::Always)
        }
    }
}

/// The plan for `action` on a delivery `acked` before its call ended:
/// as [`settlement`], but nothing is answered, nothing is retried, and a
/// failure counts as failed after its ack (dead-lettered only when
/// jetwire acked first).
pub(crate) fn settlement_after(
    action: Action,
    reads_dead_letters: bool,
    acked: Acked,
) -> Settlement {
    let plan = settlement(action, reads_dead_letters);
    if acked == Acked::No {
        return plan;
    }
    let (letter, counted) = match plan.counted {
        Counted::Acked => (None, Counted::Acked),
        Counted::Discarded => (None, Counted::Discarded),
        _ if acked == Acked::First => (plan.letter, Counted::FailedAfterAck),
        _ => (None, Counted::FailedAfterAck),
    };
    Settlement {
        letter,
        answer: Answer::Already,
        counted,
        kept: if counted == Counted::Acked {
            Kept::IfUsed
        } else {
            Kept::Always
        },
        leaves: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_acked_before_its_call_ended_is_never_answered_again() {
        let r = DlqReason::Panic;
        let nak = Action::Nak {
            delay: Duration::from_secs(1),
        };
        type Row = (Action, bool, Acked, Option<DlqReason>, Counted, Kept);
        let rows: &[Row] = &[
            (
                Action::Ack,
                false,
                Acked::First,
                None,
                Counted::Acked,
                Kept::IfUsed,
            ),
            (
                Action::Ack,
                false,
                Acked::ByHandler,
                None,
                Counted::Acked,
                Kept::IfUsed,
            ),
            (
                Action::DeadLetter(r),
                false,
                Acked::First,
                Some(r),
                Counted::FailedAfterAck,
                Kept::Always,
            ),
            (
                Action::DeadLetter(r),
                true,
                Acked::First,
                None,
                Counted::FailedAfterAck,
                Kept::Always,
            ),
            (
                Action::DeadLetter(r),
                false,
                Acked::ByHandler,
                None,
                Counted::FailedAfterAck,
                Kept::Always,
            ),
            (
                nak,
                false,
                Acked::First,
                None,
                Counted::FailedAfterAck,
                Kept::Always,
            ),
            (
                nak,
                false,
                Acked::ByHandler,
                None,
                Counted::FailedAfterAck,
                Kept::Always,
            ),
            (
                Action::Discard,
                false,
                Acked::First,
                None,
                Counted::Discarded,
                Kept::Always,
            ),
        ];
        for (action, reads, acked, letter, counted, kept) in rows {
            let plan = settlement_after(*action, *reads, *acked);
            let want = Settlement {
                letter: *letter,
                answer: Answer::Already,
                counted: *counted,
                kept: *kept,
                leaves: true,
            };
            assert_eq!(
                plan, want,
                "{action:?} acked {acked:?}, reads dead letters {reads}"
            );
        }
        assert_eq!(
            settlement_after(nak, false, Acked::No),
            settlement(nak, false)
        );
    }

    #[test]
    fn every_row_of_the_settlement_table() {
        let d = Duration::from_secs(3);
        let r = DlqReason::Permanent;
        type Row = (Action, bool, Option<DlqReason>, Answer, Counted, Kept, bool);
        let rows: &[Row] = &[
            (
                Action::Ack,
                false,
                None,
                Answer::Ack,
                Counted::Acked,
                Kept::IfUsed,
                true,
            ),
            (
                Action::Ack,
                true,
                None,
                Answer::Ack,
                Counted::Acked,
                Kept::IfUsed,
                true,
            ),
            (
                Action::Nak { delay: d },
                false,
                None,
                Answer::Nak(d),
                Counted::Retried,
                Kept::Stays,
                false,
            ),
            (
                Action::Nak { delay: d },
                true,
                None,
                Answer::Nak(d),
                Counted::Retried,
                Kept::Stays,
                false,
            ),
            (
                Action::Discard,
                false,
                None,
                Answer::Term,
                Counted::Discarded,
                Kept::Always,
                true,
            ),
            (
                Action::DeadLetter(r),
                false,
                Some(r),
                Answer::Term,
                Counted::DeadLettered(r),
                Kept::Always,
                true,
            ),
            (
                Action::DeadLetter(r),
                true,
                None,
                Answer::Term,
                Counted::GaveUp(r),
                Kept::Always,
                true,
            ),
        ];
        for (action, reads, letter, answer, counted, kept, leaves) in rows {
            assert_eq!(
                settlement(*action, *reads),
                Settlement {
                    letter: *letter,
                    answer: *answer,
                    counted: *counted,
                    kept: *kept,
                    leaves: *leaves,
                },
                "{action:?}, reads dead letters: {reads}"
            );
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    static BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(30)];

    #[test]
    fn every_row_of_the_outcome_table() {
        let p = Policy {
            max_deliver: 3,
            backoff: &BACKOFF,
        };
        let nak = |s| Action::Nak { delay: S(s) };
        let dl = Action::DeadLetter;
        let rows: &[(Outcome, u32, Action)] = &[
            (Outcome::Ok, 1, Action::Ack),
            (Outcome::Ok, 3, Action::Ack),
            (Outcome::Transient, 1, nak(1)),
            (Outcome::Transient, 2, nak(30)),
            (Outcome::Transient, 3, dl(DlqReason::Exhausted)),
            (Outcome::Transient, 9, dl(DlqReason::Exhausted)),
            (Outcome::RetryAfter(S(7)), 1, nak(7)),
            (Outcome::RetryAfter(S(7)), 3, dl(DlqReason::Exhausted)),
            (Outcome::Permanent, 1, dl(DlqReason::Permanent)),
            (Outcome::Decode, 1, dl(DlqReason::Decode)),
            (Outcome::Panic, 1, nak(1)),
            (Outcome::Panic, 3, dl(DlqReason::Panic)),
            (Outcome::Timeout, 2, nak(30)),
            (Outcome::Timeout, 3, dl(DlqReason::Timeout)),
            (Outcome::Discard, 1, Action::Discard),
            (Outcome::Discard, 3, Action::Discard),
        ];
        for (outcome, attempt, want) in rows {
            assert_eq!(
                classify(outcome, *attempt, &p),
                *want,
                "{outcome:?} on attempt {attempt}"
            );
        }
    }

    #[test]
    fn last_delay_repeats_and_empty_backoff_is_immediate() {
        let p = Policy {
            max_deliver: 10,
            backoff: &BACKOFF,
        };
        assert_eq!(p.delay(5), S(30));
        let none = Policy {
            max_deliver: 10,
            backoff: &[],
        };
        assert_eq!(
            classify(&Outcome::Transient, 1, &none),
            Action::Nak {
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn one_delivery_means_no_retry() {
        let p = Policy {
            max_deliver: 1,
            backoff: &[],
        };
        assert_eq!(
            classify(&Outcome::Transient, 1, &p),
            Action::DeadLetter(DlqReason::Exhausted)
        );
        assert_eq!(
            classify(&Outcome::Panic, 1, &p),
            Action::DeadLetter(DlqReason::Panic)
        );
    }

    #[test]
    fn reasons_round_trip() {
        for r in [
            DlqReason::Permanent,
            DlqReason::Decode,
            DlqReason::Exhausted,
            DlqReason::Panic,
            DlqReason::Timeout,
        ] {
            assert_eq!(r.as_str().parse::<DlqReason>(), Ok(r));
        }
        assert!("nope".parse::<DlqReason>().is_err());
    }
}
