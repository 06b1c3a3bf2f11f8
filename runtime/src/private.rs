//! What the macros' expansion reaches for. Not public API: no stability
//! promise, and nothing here is for hand-written code.

pub use inventory;

pub use crate::extract::{CallFuture, Delivery, Failure, FromContext, IntoOutcome, Payload};
pub use crate::registry::{Deliver, HandlerDef, HandlerOptions, Kind, StateKey};
