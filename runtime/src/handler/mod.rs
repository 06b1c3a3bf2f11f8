//! Handlers: what the macros register ([`registry`]), what a handler's
//! parameters may be ([`extract`]), what it knows of its message
//! ([`context`]), the values it is given ([`state`]), and one call of it
//! ([`invoke`]). Shared by the live loop and `TestApp`.

pub(crate) mod context;
pub(crate) mod extract;
pub(crate) mod invoke;
pub mod registry;
pub(crate) mod state;
