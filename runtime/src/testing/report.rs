//! What a [`TestApp`](crate::testing::TestApp) reports: each published
//! message's [`Report`], its handlers' [`Run`]s, and what they published.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::classify::{DlqReason, Outcome};
use crate::publish::message::Message;

/// What became of one published message: one [`Run`] per handler it
/// reached, and the reports of what those handlers published.
#[derive(Debug, Clone)]
pub struct Report {
    pub(super) subject: String,
    pub(super) runs: Vec<Run>,
    pub(super) follow_ups: Vec<Report>,
}

impl Report {
    /// The subject the message was published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether any handler received the message.
    pub fn handled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Whether every handler that received it acked it (false if none did).
    pub fn acked(&self) -> bool {
        self.handled() && self.runs.iter().all(Run::acked)
    }

    /// Whether any handler dead-lettered it.
    pub fn dead_lettered(&self) -> bool {
        self.runs.iter().any(|r| r.dlq_reason.is_some())
    }

    /// Whether any handler dropped it on purpose.
    pub fn discarded(&self) -> bool {
        self.runs.iter().any(|r| r.discarded)
    }

    /// Whether any handler's call failed after the message was
    /// acknowledged (`ack = "first"`, `ctx.ack()`).
    pub fn failed_after_ack(&self) -> bool {
        self.runs.iter().any(|r| r.failed_after_ack)
    }

    /// The reason of the first dead letter.
    pub fn dlq_reason(&self) -> Option<DlqReason> {
        self.runs.iter().find_map(|r| r.dlq_reason)
    }

    /// Runs counted against `max_deliver`: the most any one handler needed.
    pub fn attempts(&self) -> u32 {
        self.runs.iter().map(|r| r.attempts).max().unwrap_or(0)
    }

    /// The last error message any handler gave, if any.
    pub fn error(&self) -> Option<&str> {
        self.runs
            .iter()
            .rev()
            .find_map(|r| r.errors.last())
            .map(String::as_str)
    }

    /// Each handler's run, in registry order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The run of the handler with this fn name.
    pub fn run(&self, handler: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.handler == handler)
    }

    /// What the handlers published while handling it, delivered in turn.
    pub fn follow_ups(&self) -> &[Report] {
        &self.follow_ups
    }
}

/// One handler's deliveries of one message.
#[derive(Debug, Clone)]
pub struct Run {
    pub(super) handler: &'static str,
    pub(super) attempts: u32,
    pub(super) outcomes: Vec<Outcome>,
    pub(super) errors: Vec<String>,
    pub(super) delays: Vec<Duration>,
    pub(super) pauses: Vec<Duration>,
    pub(super) continued: bool,
    pub(super) dlq_reason: Option<DlqReason>,
    pub(super) discarded: bool,
    pub(super) failed_after_ack: bool,
    pub(super) partition: Option<u32>,
}

impl Run {
    /// The handler's fn name.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// The run of the last call, as counted against `max_deliver`: a
    /// call that paused is run again as the same attempt.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the last delivery was acked (a call that continued was).
    pub fn acked(&self) -> bool {
        matches!(self.outcomes.last(), Some(Outcome::Ok | Outcome::Continue))
    }

    /// Whether the last call continued with a next step
    /// ([`HandlerError::continue_with`]): its message is among the
    /// report's follow-ups.
    ///
    /// [`HandlerError::continue_with`]: crate::HandlerError::continue_with
    pub fn continued(&self) -> bool {
        self.continued
    }

    /// What each call did, in order, pauses among them.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// Each failed delivery's error message, in order.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// The virtual delay before each redelivery after a failure.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The virtual wait of each pause ([`HandlerError::pause`]), in order.
    ///
    /// [`HandlerError::pause`]: crate::HandlerError::pause
    pub fn pauses(&self) -> &[Duration] {
        &self.pauses
    }

    /// Why it was dead-lettered, if it was.
    pub fn dlq_reason(&self) -> Option<DlqReason> {
        self.dlq_reason
    }

    /// Whether the handler dropped it on purpose
    /// ([`HandlerError::discard`](crate::HandlerError::discard)).
    pub fn discarded(&self) -> bool {
        self.discarded
    }

    /// Whether the call failed after its message was acknowledged
    /// (`ack = "first"`, `ctx.ack()`): never retried, counted as
    /// `failed_after_ack`.
    pub fn failed_after_ack(&self) -> bool {
        self.failed_after_ack
    }

    /// The partition of a partitioned handler that read it (its key's), as
    /// the live runtime picks it; `None` without a key or partitions.
    pub fn partition(&self) -> Option<u32> {
        self.partition
    }
}

/// A message a handler published (or jetwire dead-lettered) in a `TestApp`:
/// the [`Message`] as built, so `subject()`, `headers()`, `header()` and
/// `payload()` are the ones every publish path has.
#[derive(Clone)]
pub struct Published(pub(super) Message);

impl std::ops::Deref for Published {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.0
    }
}

impl Published {
    /// The bytes (the same as [`Message::payload`]).
    pub fn bytes(&self) -> &Bytes {
        self.0.payload()
    }

    /// The payload decoded from JSON.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.0.payload())
    }
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("subject", &self.0.subject())
            .field("payload", &String::from_utf8_lossy(self.0.payload()))
            .finish_non_exhaustive()
    }
}
