//! The public error types: what a handler returns, what jetwire returns,
//! and the startup [`Problem`]s that keep registered handlers from running.

use std::error::Error as StdError;
use std::fmt;

use jetwire_grammar::subject::SubjectError;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

mod handler;

pub(crate) use handler::{ErrorKind, Next};
pub use handler::{HandlerError, ResultExt};

/// Why a publish failed. Nothing was stored when this is returned, except
/// for [`PublishError::Ack`], where the server may or may not have stored it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The subject breaks jetwire's subject rules; nothing was sent.
    #[error("cannot publish: {0}")]
    InvalidSubject(#[source] SubjectError),
    /// The payload could not be encoded as JSON; nothing was sent.
    #[error("cannot encode the payload for `{subject}` as JSON: {source}")]
    Encode {
        /// The subject.
        subject: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The payload could not be encoded by its codec; nothing was sent.
    #[error("cannot encode the payload for `{subject}`: {source}")]
    Codec {
        /// The subject.
        subject: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },
    /// A header name or value is not valid in NATS; nothing was sent.
    #[error("invalid header for `{subject}`: {reason}")]
    InvalidHeader {
        /// The subject.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// The message could not be sent to the server.
    #[error("could not publish to `{subject}`: {source}; is the server reachable?")]
    Send {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// JetStream did not confirm the message. It may have been stored:
    /// publishing again with the same message id is safe.
    #[error(
        "JetStream did not confirm the message on `{subject}`: {source}; does a stream capture this subject?"
    )]
    Ack {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The stream refused the message, and said why (a fast batch's
    /// answer: a message over the stream's size, a full stream, a stream
    /// that does not take fast batches).
    #[error("JetStream refused the message on `{subject}`: {reason}")]
    Refused {
        /// The subject.
        subject: String,
        /// JetStream's error code, when it gave one.
        code: Option<u64>,
        /// What the server said.
        reason: String,
    },
}

/// What kind of failure a [`PublishError`] is: what a caller that tries
/// again (an outbox relay, a retrying handler) needs to know.
///
/// ```
/// use jetwire::{PublishError, PublishErrorKind};
/// fn worth_retrying(e: &PublishError) -> bool {
///     !matches!(e.kind(), PublishErrorKind::Invalid)
/// }
/// # let _ = worth_retrying;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The message is not one jetwire sends (subject, header, payload):
    /// the same message fails the same way every time.
    Invalid,
    /// The server was not reached, or its confirmation did not come in
    /// time (a lost connection, a broken pipe, an ack timeout): it may have
    /// been stored; the same message id stores it once.
    Unreachable,
    /// No JetStream answered (503): either no stream captures the
    /// subject, or the one that does has no leader for a moment (an
    /// election, a server restarting). Which, only a lookup of the
    /// subject's stream can tell ([`crate::Publisher::stream_of`]).
    NoResponders,
    /// The stream refused it, with JetStream's error code when it gave
    /// one (a full stream under `discard = new`, a message over its size,
    /// a failed expectation).
    Refused(Option<u64>),
}

impl PublishError {
    /// A payload that did not encode: [`PublishError::Encode`] for JSON's
    /// error, [`PublishError::Codec`] for another codec's.
    pub(crate) fn encoding(subject: &str, error: BoxError) -> PublishError {
        match error.downcast::<serde_json::Error>() {
            Ok(json) => PublishError::Encode {
                subject: subject.to_owned(),
                source: *json,
            },
            Err(source) => PublishError::Codec {
                subject: subject.to_owned(),
                source,
            },
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> PublishErrorKind {
        use async_nats::jetstream::context::{PublishError as NatsPublish, PublishErrorKind as K};
        match self {
            PublishError::InvalidSubject(_)
            | PublishError::Encode { .. }
            | PublishError::Codec { .. }
            | PublishError::InvalidHeader { .. } => PublishErrorKind::Invalid,
            PublishError::Send { source, .. } => match source.downcast_ref::<NatsPublish>() {
                Some(e) if e.kind() == K::MaxPayloadExceeded => PublishErrorKind::Invalid,
                _ => PublishErrorKind::Unreachable,
            },
            PublishError::Ack { source, .. } => match source.downcast_ref::<NatsPublish>() {
                Some(e) => match e.kind() {
                    K::StreamNotFound => PublishErrorKind::NoResponders,
                    K::TimedOut | K::BrokenPipe => PublishErrorKind::Unreachable,
                    K::MaxPayloadExceeded => PublishErrorKind::Invalid,
                    K::WrongLastMessageId | K::WrongLastSequence | K::MaxAckPending | K::Other => {
                        PublishErrorKind::Refused(refusal_code(e))
                    }
                },
                None => PublishErrorKind::Unreachable,
            },
            PublishError::Refused { code, .. } => PublishErrorKind::Refused(*code),
        }
    }
}

/// The JetStream error code behind a refused publish, when it has one.
fn refusal_code(e: &async_nats::jetstream::context::PublishError) -> Option<u64> {
    use std::error::Error as _;
    let api = e.source()?.downcast_ref::<async_nats::jetstream::Error>()?;
    Some(api.error_code().0)
}

/// What `jetwire` returns: startup, configuration and connection failures.
/// Each message names what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable or builder value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The handlers, as registered, cannot run together. Every problem is listed.
    #[error("{0}")]
    Handlers(Problems),
    /// The server could not be reached, or refused the credentials or
    /// the TLS handshake.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The server URLs, without secrets.
        url: String,
        /// The client's error, and which variable to check.
        reason: String,
    },
    /// Under `JETWIRE_PROVISION=bind`, what the server lacks: every stream,
    /// durable and bucket missing, and the permissions the app needs.
    #[error(
        "JETWIRE_PROVISION=bind, and the server lacks what the handlers need; create these (or start once with JETWIRE_PROVISION=create):\n  - {}\nThe app's NATS user needs:\n{permissions}",
        missing.join("\n  - ")
    )]
    NotProvisioned {
        /// Each missing stream, durable or bucket, with the settings jetwire would give it.
        missing: Vec<String>,
        /// The permissions the app needs, as a nats-server `permissions` block.
        permissions: String,
    },
    /// A signal was not received in time, or could not be sent or awaited.
    #[error("signal: {0}")]
    Signal(String),
    /// A checkpoint could not be saved or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A chunk of output could not be streamed.
    #[error("streamed output: {0}")]
    Output(String),
    /// A dead-letter operation on one letter failed; the letter is where
    /// it was, unless the message says otherwise.
    #[error("dead letter #{sequence}: {reason}")]
    DeadLetter {
        /// The letter's sequence in the dead-letter stream.
        sequence: u64,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// A stream could not be created or bound.
    #[error("stream `{stream}`: {reason}")]
    Stream {
        /// The stream name.
        stream: String,
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// A durable consumer could not be created, updated or bound.
    #[error("consumer `{durable}` of handler `{handler}`: {reason}")]
    Consumer {
        /// The durable name.
        durable: String,
        /// The handler it serves.
        handler: String,
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Any other failure talking to NATS.
    #[error("NATS: {context}: {source}")]
    Nats {
        /// What jetwire was doing.
        context: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// Shutdown did not complete cleanly.
    #[error("shutdown: {0}")]
    Shutdown(String),
}

impl Error {
    /// A failure talking to NATS while doing `context`.
    pub(crate) fn nats(context: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Nats {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// One reason the registered handlers cannot run together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Two `#[queue]` handlers on one subject.
    DuplicateQueue {
        /// The subject.
        subject: String,
        /// Both handlers, as `module::fn`.
        handlers: [String; 2],
    },
    /// Two `#[queue]` subjects that match a common subject: a work-queue
    /// stream refuses consumers whose filters overlap.
    OverlappingQueues {
        /// Both subjects.
        subjects: [String; 2],
        /// Both handlers, as `module::fn`.
        handlers: [String; 2],
    },
    /// Two handlers whose durable consumer would have the same name.
    DuplicateDurable {
        /// The durable name.
        durable: String,
        /// Both handlers, as `module::fn`.
        handlers: [String; 2],
    },
    /// A handler takes `State<T>` but no `T` was given.
    MissingState {
        /// The handler, as `module::fn`.
        handler: String,
        /// The missing type.
        type_name: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicateQueue {
                subject,
                handlers: [a, b],
            } => write!(
                f,
                "two #[queue] handlers on `{subject}`: `{a}` and `{b}`; a job is done once, by one handler: remove one or give it another subject"
            ),
            Problem::OverlappingQueues {
                subjects: [sa, sb],
                handlers: [a, b],
            } => write!(
                f,
                "#[queue] subjects `{sa}` (`{a}`) and `{sb}` (`{b}`) overlap; a job must have exactly one handler: make the subjects disjoint"
            ),
            Problem::DuplicateDurable {
                durable,
                handlers: [a, b],
            } => write!(
                f,
                "handlers `{a}` and `{b}` would share the durable consumer `{durable}` and steal each other's messages: rename one fn or set `durable = \"..\"` on one"
            ),
            Problem::MissingState { handler, type_name } => write!(
                f,
                "handler `{handler}` takes `State<{type_name}>` but no `{type_name}` was given: add `.state(value)` with a `{type_name}` to the App (or TestApp)"
            ),
        }
    }
}

/// Every problem found by the startup checks, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems with the registered handlers:", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}
