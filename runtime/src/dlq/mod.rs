//! Dead letters: the reasons, the headers, the message that carries them,
//! and the capture that dead-letters a last delivery nobody answered.
//!
//! A dead letter is published to `dlq.<original subject>` with the original
//! payload and headers plus the `Jetwire-Dlq-*` headers below; the
//! original's `Nats-*` control headers are kept as `Jetwire-Dlq-Orig-<name>`
//! so that none of them steers (or fails) the letter's own publish; a letter
//! larger than the server's `max_payload` has its payload cut to fit and says
//! so in `Jetwire-Dlq-Truncated`. Its
//! `Nats-Msg-Id` is `dlq:<stream>:<sequence>:<durable>`, so writing the same
//! failure twice (a crash between the copy and the term, or the advisory
//! path racing a live replica) stores it once.

pub(crate) mod advisory;
pub(crate) mod letter;
mod ops;
pub(crate) mod stream;
mod trust;
mod view;

pub use crate::classify::{DlqReason, UnknownReason};
pub use crate::names::dlq_subject as subject_for;
pub use crate::publish::message::REPLAYED_ID;
pub use letter::{
    ATTEMPTS, ERROR, FAILED_AT, HANDLER, MESSAGE_ID, ORIGINAL, REASON, SEQUENCE, STREAM, TRUNCATED,
};
pub use ops::{DeadLetters, REPLAYED_FROM};
pub use view::{DeadLetter, Filter};
