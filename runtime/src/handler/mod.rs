//! Handlers: what the macros register ([`registry`]), what a handler's
//! parameters may be ([`extract`]), what it knows of its message
//! ([`context`]), the values it is given ([`state`]), the message on its
//! way to it ([`delivery`]) through its [`middleware`], and one call of it
//! ([`invoke`]); handlers given in code ([`configured`]). Shared by the live loop and `TestApp`.

pub(crate) mod configured;
pub(crate) mod context;
pub(crate) mod delivery;
pub(crate) mod extract;
pub(crate) mod invoke;
#[cfg(feature = "tower")]
pub(crate) mod layer;
pub(crate) mod meta;
pub(crate) mod middleware;
pub(crate) mod options;
pub mod registry;
pub(crate) mod state;
pub(crate) mod steps;
