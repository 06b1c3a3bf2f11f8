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
//! // A pause is not a failure: on the last attempt too, it waits.
//! let pause = Outcome::Pause(Duration::from_secs(60));
//! assert_eq!(classify(&pause, 3, &policy), Action::Pause { delay: Duration::from_secs(60) });
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
    /// It returned [`HandlerError::pause`](crate::HandlerError::pause):
    /// run it again after the delay, as the same attempt.
    Pause(Duration),
    /// It returned [`HandlerError::continue_with`](crate::HandlerError::continue_with):
    /// done, and the next input goes on as a new message.
    Continue,
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
    /// Publish the next input to the same handler, then acknowledge.
    Continue,
    /// Hand the message back unrun, redelivered after `delay`: the run is
    /// not counted.
    Pause {
        /// How long the server waits before redelivering.
        delay: Duration,
    },
}

/// What a call's `outcome` counts as when its message has room for one
/// more pause or not: a pause without room is a retry after the same
/// delay, so that a step pausing forever still ends. Every other outcome
/// is itself. The room is the delivery record's
/// ([`policy::runs::may_pause`](crate::policy::runs::may_pause)).
pub(crate) fn counted(outcome: Outcome, room_to_pause: bool) -> Outcome {
    match outcome {
        Outcome::Pause(delay) if !room_to_pause => Outcome::RetryAfter(delay),
        other => other,
    }
}

/// Decides what happens to a message after delivery `attempt` (1-based) of
/// `max_deliver` ended with `outcome`.
pub fn classify(outcome: &Outcome, attempt: u32, policy: &Policy) -> Action {
    let last = attempt >= policy.max_deliver;
    match *outcome {
        Outcome::Ok => Action::Ack,
        Outcome::Discard => Action::Discard,
        Outcome::Pause(delay) => Action::Pause { delay },
        Outcome::Continue => Action::Continue,
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
    /// The call paused: handed back, its run not counted.
    Paused,
    /// The call continued: its next input is published before the ack.
    Continued,
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
        Action::Continue => Settlement {
            letter: None,
            answer: Answer::Ack,
            counted: Counted::Continued,
            kept: Kept::IfUsed,
            leaves: true,
        },
        Action::Pause { delay } => Settlement {
            letter: None,
            answer: Answer::Nak(delay),
            counted: Counted::Paused,
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
        Counted::Continued => (None, Counted::Continued),
        Counted::Discarded => (None, Counted::Discarded),
        _ if acked == Acked::First => (plan.letter, Counted::FailedAfterAck),
        _ => (None, Counted::FailedAfterAck),
    };
    Settlement {
        letter,
        answer: Answer::Already,
        counted,
        kept: if matches!(counted, Counted::Acked | Counted::Continued) {
            Kept::IfUsed
        } else {
            Kept::Always
        },
        leaves: true,
    }
}

#[cfg(test)]
mod tests;
