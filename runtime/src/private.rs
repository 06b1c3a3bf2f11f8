//! What the macros' expansion reaches for. Not public API: no stability
//! promise, and nothing here is for hand-written code.

pub use inventory;

pub use crate::handler::extract::{
    CallFuture, Delivery, Failure, FromContext, IntoOutcome, Payload, StateKey,
};
pub use crate::handler::registry::{Deliver, HandlerDef, HandlerOptions, Kind};

/// Checks, at the handler's name, that its future can move between threads.
pub fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}
