//! The consume loop's policies: small pure types that decide, with unit
//! tests and no I/O, what the loops carry out.
//!
//! - [`RetryPause`]: how long to wait after a failure, with jitter.
//! - [`Silence`]: when a waiting pull has heard nothing for too long.
//! - [`Sizing`]: how many messages a pull asks for and a process holds.
//! - [`Inline`]: whether the loop runs a call itself or gives it a task.
//! - [`runs`]: which run of its handler a delivery is, hand-backs aside.

mod inline;
mod pause;
pub(crate) mod runs;
mod silence;
mod sizing;

pub(crate) use inline::Inline;
pub use pause::RetryPause;
pub(crate) use silence::Silence;
pub(crate) use sizing::Sizing;
