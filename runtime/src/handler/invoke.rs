//! One handler call: decode, call with the timeout, catch a panic, and say
//! what happened as an [`Outcome`]. Shared by the consume loop and `TestApp`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::CatchUnwind;
use tokio::time::Instant;

use crate::classify::Outcome;
use crate::error::ErrorKind;
use crate::handler::context::Context;
use crate::handler::extract::{CallFuture, Delivery, Failure};
use crate::handler::registry::HandlerDef;
use crate::text;

/// What one call did, and the error message for logs and dead letters.
#[derive(Debug, Clone)]
pub(crate) struct Called {
    pub(crate) outcome: Outcome,
    pub(crate) error: Option<String>,
}

/// The longest error message a call keeps, in bytes: a decode error can
/// quote the payload, a panic or a handler's error say anything.
const ERROR_MAX: usize = 1024;

impl Called {
    fn failed(outcome: Outcome, error: &str) -> Called {
        Called {
            outcome,
            error: Some(text::bounded(error, ERROR_MAX)),
        }
    }
}

/// Runs `def`'s handler on one delivery.
pub(crate) async fn invoke(def: &HandlerDef, payload: Bytes, ctx: Context) -> Called {
    Call::start(def, payload, ctx).finish().await
}

/// A started handler call. It can be polled once in place ([`Call::now`]),
/// so a call that finishes at once needs no timer, and finished later
/// ([`Call::finish`]); it moves freely between the two.
pub(crate) struct Call {
    future: CatchUnwind<AssertUnwindSafe<CallFuture>>,
    /// When the call times out, and its `timeout`.
    deadline: Option<(Instant, Duration)>,
}

impl Call {
    pub(crate) fn start(def: &HandlerDef, payload: Bytes, ctx: Context) -> Call {
        Call {
            future: AssertUnwindSafe((def.call)(Delivery { payload, ctx })).catch_unwind(),
            deadline: def.options.timeout.map(|t| (Instant::now() + t, t)),
        }
    }

    /// Polls the call once: what it did, if it finished without waiting.
    pub(crate) fn now(&mut self) -> Option<Called> {
        (&mut self.future).now_or_never().map(called)
    }

    /// Runs the call to its end or its timeout.
    pub(crate) async fn finish(self) -> Called {
        match self.deadline {
            Some((at, limit)) => match tokio::time::timeout_at(at, self.future).await {
                Ok(r) => called(r),
                Err(_) => timed_out(limit),
            },
            None => called(self.future.await),
        }
    }
}

fn called(result: std::thread::Result<Result<(), Failure>>) -> Called {
    match result {
        Ok(Ok(())) => Called {
            outcome: Outcome::Ok,
            error: None,
        },
        Ok(Err(failure)) => from_failure(failure),
        Err(panic) => Called::failed(Outcome::Panic, &panic_message(&*panic)),
    }
}

fn timed_out(limit: Duration) -> Called {
    Called::failed(
        Outcome::Timeout,
        &format!("timeout: the call ran past {limit:?}"),
    )
}

fn from_failure(failure: Failure) -> Called {
    match failure {
        Failure::Handler(err) => {
            let outcome = match err.kind() {
                ErrorKind::Transient => Outcome::Transient,
                ErrorKind::Permanent => Outcome::Permanent,
                ErrorKind::RetryAfter(d) => Outcome::RetryAfter(d),
                ErrorKind::Discard => Outcome::Discard,
            };
            Called::failed(outcome, &err.report())
        }
        Failure::Decode(msg) => Called::failed(Outcome::Decode, &msg),
        Failure::MissingState(ty) => Called::failed(
            Outcome::Permanent,
            &format!("no `{ty}` was given to App::state"),
        ),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    format!("panic: {}", crate::text::panic_text(panic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HandlerError;

    #[test]
    fn error_messages_from_outside_are_bounded() {
        let huge = format!("invalid type: string \"{}\"\r\n", "x".repeat(1 << 20));
        for called in [
            from_failure(Failure::Decode(huge.clone())),
            from_failure(Failure::Handler(HandlerError::transient(huge.clone()))),
            called(Err(Box::new(huge.clone()))),
        ] {
            let error = called.error.expect("a failure has an error");
            assert!(error.len() <= ERROR_MAX + 3, "{} bytes", error.len());
            assert!(!error.contains(['\r', '\n']));
        }
    }
}
