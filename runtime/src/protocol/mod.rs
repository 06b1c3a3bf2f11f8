//! JetStream's wire, as jetwire speaks it: what a delivery's reply
//! subject says ([`reply`]), pull requests and the statuses that answer
//! them ([`pull`]), and answering a delivery ([`ack`]).

pub(crate) mod ack;
pub(crate) mod pull;
pub(crate) mod reply;
