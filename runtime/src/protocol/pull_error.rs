//! [`PullError`]: why pulling from a durable failed, by kind. The loop
//! answers every kind alike (a pause, then the durable made sure of); the
//! kind is for its log line and its tests.

use crate::text;

/// Why a stretch of pulling failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// The inbox for a pull's messages could not be subscribed.
    #[error("subscribing to a pull inbox: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    /// A pull request could not be sent.
    #[error("sending a pull request: {0}")]
    Send(#[source] async_nats::client::PublishError),
    /// The server refused the request (a 409 other than a leader change
    /// or a batch's end: a deleted consumer, a request over its limits,
    /// a server shutting down).
    #[error("pull request refused: {status} {description}")]
    Refused { status: u16, description: String },
    /// No JetStream answered (a 503).
    #[error("no JetStream answers pull requests (503)")]
    NoResponders,
    /// A status jetwire does not expect on a pull.
    #[error("unexpected pull status: {status} {description}")]
    Unexpected { status: u16, description: String },
    /// The durable is gone.
    #[error("the durable was deleted")]
    DurableDeleted,
    /// A no-wait fetch got no answer at all.
    #[error("a fetch went unanswered")]
    Unanswered,
    /// A waiting pull heard nothing, not even heartbeats.
    #[error("missed two pull heartbeats")]
    Silent,
    /// The inbox's subscription ended.
    #[error("the pull subscription ended")]
    Closed,
}

impl PullError {
    /// A refusal with the server's status and its description, bounded.
    pub(crate) fn status(refused: bool, status: u16, description: &str) -> PullError {
        let description = text::bounded(description, 200);
        match refused {
            true => PullError::Refused {
                status,
                description,
            },
            false => PullError::Unexpected {
                status,
                description,
            },
        }
    }
}
