//! What a handler returns: [`HandlerError`], which says whether to try
//! again, and [`ResultExt`], to say it where an error happens.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use super::BoxError;

/// What went wrong in a handler, and whether to try again.
///
/// | constructor | outcome |
/// |---|---|
/// | [`HandlerError::transient`] or `?` on any std error | nak, redelivered after the handler's backoff |
/// | [`HandlerError::retry_after`] | nak, redelivered after the given delay |
/// | [`HandlerError::permanent`] | dead-lettered now, no retry |
/// | [`HandlerError::pause`] | redelivered after the given delay, the run not counted |
/// | [`HandlerError::continue_with`](HandlerError::continue_with) | acked; the next input published to the same handler |
///
/// On the last delivery (`max_deliver`), a transient error is dead-lettered
/// with reason `exhausted`.
///
/// Like `anyhow::Error`, `HandlerError` does not implement
/// [`std::error::Error`] itself, so that `?` can turn any error into it.
///
/// ```
/// use jetwire::HandlerError;
/// use std::time::Duration;
///
/// fn check(to: &str) -> Result<(), HandlerError> {
///     if !to.contains('@') {
///         return Err(HandlerError::permanent("no @ in address"));
///     }
///     let _port: u16 = "25".parse()?; // a std error: transient
///     Err(HandlerError::retry_after("mail server busy", Duration::from_secs(10)))
/// }
/// assert!(check("nobody").unwrap_err().is_permanent());
/// assert_eq!(check("a@b").unwrap_err().retry_delay(), Some(Duration::from_secs(10)));
/// ```
pub struct HandlerError {
    kind: ErrorKind,
    source: BoxError,
    /// The next input, for [`HandlerError::continue_with`](HandlerError::continue_with).
    next: Option<Box<Next>>,
}

/// The input a call continues with: its bytes and their content type.
#[derive(Debug, Clone)]
pub(crate) struct Next {
    pub(crate) payload: bytes::Bytes,
    pub(crate) content_type: &'static str,
}

/// How a [`HandlerError`] is to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Transient,
    RetryAfter(Duration),
    Permanent,
    Discard,
    /// The payload did not decode: dead-lettered as `decode`.
    Decode,
    /// Wait, then run again as the same attempt.
    Pause(Duration),
    /// Done: go on with the next input, as a new message.
    Continue,
}

impl HandlerError {
    fn of(kind: ErrorKind, source: BoxError) -> Self {
        HandlerError {
            kind,
            source,
            next: None,
        }
    }

    /// A failure that may pass: the message is redelivered after the
    /// handler's backoff delay for this attempt.
    pub fn transient(err: impl Into<BoxError>) -> Self {
        HandlerError::of(ErrorKind::Transient, err.into())
    }

    /// A failure that will not pass by retrying: the message is
    /// dead-lettered now with reason `permanent`.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        HandlerError::of(ErrorKind::Permanent, err.into())
    }

    /// A transient failure that knows when to try again: the message is
    /// redelivered after `delay` instead of the handler's backoff.
    pub fn retry_after(err: impl Into<BoxError>, delay: Duration) -> Self {
        HandlerError::of(ErrorKind::RetryAfter(delay), err.into())
    }

    /// Not a failure: the step waits. The message is redelivered after
    /// `delay` and the handler runs again as the same attempt, so a pause
    /// never uses up `max_deliver` and never dead-letters. For a step
    /// waiting on something outside (a payment to clear, a file to land)
    /// without holding a call slot or a connection meanwhile.
    ///
    /// Each message may pause 10 times without spending a run; a pause
    /// past that counts as a retry after `delay` (and so ends in a dead
    /// letter once the runs are spent), so that a step waiting forever
    /// still ends. A pause after the message was acknowledged (`ack =
    /// "first"`, `ctx.ack()`) cannot wait: it counts as a failure after
    /// the ack.
    ///
    /// ```
    /// use jetwire::{queue, HandlerError};
    /// use std::time::Duration;
    ///
    /// #[queue("queue.settle-payment")]
    /// async fn settle(payment: String) -> Result<(), HandlerError> {
    ///     let cleared = payment.ends_with("-cleared"); // ask the bank here
    ///     if !cleared {
    ///         return Err(HandlerError::pause(Duration::from_secs(60)));
    ///     }
    ///     Ok(())
    /// }
    /// assert_eq!(
    ///     HandlerError::pause(Duration::from_secs(60)).pause_delay(),
    ///     Some(Duration::from_secs(60))
    /// );
    /// ```
    pub fn pause(delay: Duration) -> Self {
        HandlerError::of(
            ErrorKind::Pause(delay),
            format!("paused for {delay:?}").into(),
        )
    }

    /// A call that continues with `next`: [`HandlerError::continue_with`](HandlerError::continue_with).
    pub(crate) fn continued(next: Next) -> Self {
        HandlerError {
            kind: ErrorKind::Continue,
            source: "continued with the next input".into(),
            next: Some(Box::new(next)),
        }
    }

    /// Whether this is a [`HandlerError::continue_with`](HandlerError::continue_with).
    pub fn continues(&self) -> bool {
        self.kind == ErrorKind::Continue
    }

    pub(crate) fn next(&self) -> Option<&Next> {
        self.next.as_deref()
    }

    /// Not a failure to keep: the message is dropped on purpose
    /// (terminated without a dead letter), logged with `reason` and
    /// counted as discarded. For a message that is stale, a duplicate the
    /// handler recognised, or meant for someone else.
    ///
    /// ```
    /// use jetwire::{queue, HandlerError};
    ///
    /// #[queue("queue.price-update")]
    /// async fn update(version: u64) -> Result<(), HandlerError> {
    ///     if version < 10 {
    ///         return Err(HandlerError::discard("older than the price we have"));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn discard(reason: impl Into<BoxError>) -> Self {
        HandlerError::of(ErrorKind::Discard, reason.into())
    }

    /// A payload that did not decode as the handler's type: dead-lettered
    /// now with reason `decode`. What a codec returns.
    pub(crate) fn decode(err: impl Into<BoxError>) -> Self {
        HandlerError::of(ErrorKind::Decode, err.into())
    }

    /// Whether this error drops the message without a dead letter.
    pub fn is_discard(&self) -> bool {
        self.kind == ErrorKind::Discard
    }

    /// Whether this error dead-letters the message at once: a permanent
    /// error, or a payload that did not decode (reason `decode`).
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, ErrorKind::Permanent | ErrorKind::Decode)
    }

    /// The delay asked for with [`HandlerError::retry_after`].
    pub fn retry_delay(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::RetryAfter(d) => Some(d),
            _ => None,
        }
    }

    /// The wait asked for with [`HandlerError::pause`].
    pub fn pause_delay(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Pause(d) => Some(d),
            _ => None,
        }
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message with its chain of causes, as written to `Jetwire-Dlq-Error`.
    pub(crate) fn report(&self) -> String {
        let mut out = self.source.to_string();
        let mut next = self.source.source();
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Transient => write!(f, "transient: {}", self.source),
            ErrorKind::Permanent => write!(f, "permanent: {}", self.source),
            ErrorKind::Discard => write!(f, "discard: {}", self.source),
            ErrorKind::Decode => write!(f, "decode: {}", self.source),
            ErrorKind::RetryAfter(d) => write!(f, "retry after {d:?}: {}", self.source),
            ErrorKind::Pause(_) => write!(f, "pause: {}", self.source),
            ErrorKind::Continue => write!(f, "continue: {}", self.source),
        }
    }
}

/// A [`HandlerError`] as a boxed std error (what tower's layers pass on),
/// keeping its kind for [`HandlerError::from_boxed`].
#[derive(Debug)]
struct Boxed(HandlerError);

impl fmt::Display for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Boxed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0.source)
    }
}

impl From<HandlerError> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(err: HandlerError) -> Self {
        Box::new(Boxed(err))
    }
}

impl HandlerError {
    /// The error a boxed one is: a boxed [`HandlerError`] with its kind,
    /// any other error transient.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn from_boxed(err: BoxError) -> HandlerError {
        match err.downcast::<Boxed>() {
            Ok(boxed) => boxed.0,
            Err(other) => HandlerError::of(ErrorKind::Transient, other),
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(err: E) -> Self {
        HandlerError::transient(err)
    }
}

/// Classify an error where it happens: `.permanent()?`, `.transient()?`,
/// `.retry_after(delay)?`.
///
/// ```
/// use jetwire::{HandlerError, ResultExt};
///
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse().permanent()?; // bad input never gets better
///     Ok(n)
/// }
/// assert!(parse("x").unwrap_err().is_permanent());
/// ```
pub trait ResultExt<T> {
    /// On error, a permanent [`HandlerError`].
    fn permanent(self) -> Result<T, HandlerError>;
    /// On error, a transient [`HandlerError`].
    fn transient(self) -> Result<T, HandlerError>;
    /// On error, a [`HandlerError`] redelivered after `delay`.
    fn retry_after(self, delay: Duration) -> Result<T, HandlerError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::permanent)
    }
    fn transient(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::transient)
    }
    fn retry_after(self, delay: Duration) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::retry_after(e, delay))
    }
}
