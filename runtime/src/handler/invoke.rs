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

/// What one call did, and the error message for logs and dead letters.
#[derive(Debug, Clone)]
pub(crate) struct Called {
    pub(crate) outcome: Outcome,
    pub(crate) error: Option<String>,
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
        Err(panic) => Called {
            outcome: Outcome::Panic,
            error: Some(panic_message(&*panic)),
        },
    }
}

fn timed_out(limit: Duration) -> Called {
    Called {
        outcome: Outcome::Timeout,
        error: Some(format!("timeout: the call ran past {limit:?}")),
    }
}

fn from_failure(failure: Failure) -> Called {
    match failure {
        Failure::Handler(err) => {
            let outcome = match err.kind() {
                ErrorKind::Transient => Outcome::Transient,
                ErrorKind::Permanent => Outcome::Permanent,
                ErrorKind::RetryAfter(d) => Outcome::RetryAfter(d),
            };
            Called {
                outcome,
                error: Some(err.report()),
            }
        }
        Failure::Decode(msg) => Called {
            outcome: Outcome::Decode,
            error: Some(msg),
        },
        Failure::MissingState(ty) => Called {
            outcome: Outcome::Permanent,
            error: Some(format!("no `{ty}` was given to App::state")),
        },
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    format!("panic: {msg}")
}
