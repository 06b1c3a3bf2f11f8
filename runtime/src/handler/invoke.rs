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
use crate::error::{ErrorKind, HandlerError, Next};
use crate::handler::context::Context;
use crate::handler::delivery::Delivery;
use crate::handler::extract::CallFuture;
use crate::handler::middleware::Middlewares;
use crate::handler::registry::HandlerDef;
use crate::names;
use crate::text;

/// What one call did, and the error message for logs and dead letters.
#[derive(Debug, Clone)]
pub(crate) struct Called {
    pub(crate) outcome: Outcome,
    pub(crate) error: Option<String>,
    /// What a call that continued goes on with (boxed: every call
    /// returns a `Called`, few continue).
    pub(crate) next: Option<Box<Next>>,
}

/// The longest error message a call keeps, in bytes: a decode error can
/// quote the payload, a panic or a handler's error say anything.
const ERROR_MAX: usize = 1024;

impl Called {
    fn failed(outcome: Outcome, error: &str) -> Called {
        Called {
            outcome,
            error: Some(text::bounded(error, ERROR_MAX)),
            next: None,
        }
    }

    /// The call as its handler's kind allows: a continuation goes back on
    /// the handler's subject, which only a work queue keeps to itself.
    fn for_kind(self, queue: bool) -> Called {
        match self.outcome {
            Outcome::Continue if !queue => Called::failed(
                Outcome::Permanent,
                "continue_with is for #[queue] handlers: an event's subject reaches every app that subscribes; publish the next step to a work-queue subject with ctx.publish instead",
            ),
            _ => self,
        }
    }
}

/// Runs `def`'s handler, through its middleware, on one delivery.
pub(crate) async fn invoke(
    def: &HandlerDef,
    middlewares: &Middlewares,
    payload: Bytes,
    ctx: Context,
) -> Called {
    Call::start(def, middlewares, payload, ctx).finish().await
}

/// A started handler call. It can be polled once in place ([`Call::now`]),
/// so a call that finishes at once needs no timer, and finished later
/// ([`Call::finish`]); it moves freely between the two.
pub(crate) struct Call {
    future: CatchUnwind<AssertUnwindSafe<CallFuture>>,
    /// When the call times out, and its `timeout`.
    deadline: Option<(Instant, Duration)>,
    /// Whether the handler is a work queue's.
    queue: bool,
}

impl Call {
    /// Starts `def`'s call through its middleware, if it has any.
    pub(crate) fn start(
        def: &HandlerDef,
        middlewares: &Middlewares,
        payload: Bytes,
        ctx: Context,
    ) -> Call {
        let future = middlewares.call(def, Delivery::new(payload, ctx));
        Call {
            future: AssertUnwindSafe(future).catch_unwind(),
            deadline: def.options.timeout.map(|t| (Instant::now() + t, t)),
            queue: def.kind == names::Kind::Queue,
        }
    }

    /// Polls the call once: what it did, if it finished without waiting.
    pub(crate) fn now(&mut self) -> Option<Called> {
        let queue = self.queue;
        (&mut self.future)
            .now_or_never()
            .map(|r| called(r).for_kind(queue))
    }

    /// Runs the call to its end or its timeout.
    pub(crate) async fn finish(self) -> Called {
        let queue = self.queue;
        let called = match self.deadline {
            Some((at, limit)) => match tokio::time::timeout_at(at, self.future).await {
                Ok(r) => called(r),
                Err(_) => timed_out(limit),
            },
            None => called(self.future.await),
        };
        called.for_kind(queue)
    }
}

fn called(result: std::thread::Result<Result<(), HandlerError>>) -> Called {
    match result {
        Ok(Ok(())) => Called {
            outcome: Outcome::Ok,
            error: None,
            next: None,
        },
        Ok(Err(error)) => from_error(&error),
        Err(panic) => Called::failed(Outcome::Panic, &panic_message(&*panic)),
    }
}

fn timed_out(limit: Duration) -> Called {
    Called::failed(
        Outcome::Timeout,
        &format!("timeout: the call ran past {limit:?}"),
    )
}

fn from_error(err: &HandlerError) -> Called {
    let outcome = match err.kind() {
        ErrorKind::Transient => Outcome::Transient,
        ErrorKind::Permanent => Outcome::Permanent,
        ErrorKind::RetryAfter(d) => Outcome::RetryAfter(d),
        ErrorKind::Discard => Outcome::Discard,
        ErrorKind::Decode => Outcome::Decode,
        ErrorKind::Pause(d) => Outcome::Pause(d),
        ErrorKind::Continue => Outcome::Continue,
    };
    Called {
        next: err.next().cloned().map(Box::new),
        ..Called::failed(outcome, &err.report())
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    format!("panic: {}", crate::text::panic_text(panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_outside_are_bounded() {
        let huge = format!("invalid type: string \"{}\"\r\n", "x".repeat(1 << 20));
        for called in [
            from_error(&HandlerError::decode(huge.clone())),
            from_error(&HandlerError::transient(huge.clone())),
            called(Err(Box::new(huge.clone()))),
        ] {
            let error = called.error.expect("a failure has an error");
            assert!(error.len() <= ERROR_MAX + 3, "{} bytes", error.len());
            assert!(!error.contains(['\r', '\n']));
        }
    }
}
