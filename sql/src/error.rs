//! [`OutboxError`]: what enqueuing, migrating and relaying can fail with.

/// An outbox or dead-letter table operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The message cannot be published as given (a bad subject, a payload
    /// that does not serialize, a bad header): nothing was written, and
    /// the caller's transaction can still roll back.
    #[error("outbox: {0}")]
    Message(#[from] jetwire::PublishError),
    /// The database failed.
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    /// A setting is invalid: what is wrong, and what to write instead.
    #[error("outbox: {0}")]
    Config(String),
}

impl From<OutboxError> for jetwire::Error {
    fn from(e: OutboxError) -> Self {
        jetwire::Error::Shutdown(e.to_string())
    }
}
