//! JetStream's wire, as jetwire speaks it: what a delivery's reply
//! subject says ([`reply`]), pull requests and the statuses that answer
//! them ([`pull`]), answering a delivery ([`ack`]), the records of
//! deliveries handed back unrun ([`runs`]), and of the last runs a loop
//! began ([`begun`]).

pub(crate) mod ack;
pub(crate) mod begun;
pub(crate) mod checkpoints;
pub(crate) mod fast;
pub(crate) mod kept;
pub(crate) mod lock;
pub(crate) mod pin;
pub(crate) mod pull;
pub(crate) mod pull_error;
pub(crate) mod removal;
pub(crate) mod reply;
pub(crate) mod runs;
pub(crate) mod signals;
pub(crate) mod stream;
pub(crate) mod streamed;
pub(crate) mod version;
