//! How a delivery is answered: ack, nak, progress or term, sent on its
//! reply subject through the loop's one client.

use async_nats::jetstream::AckKind;
use async_nats::{Client, Subject};

/// How one delivery is answered: on its reply subject, through the loop's
/// client. Borrowed from the delivery's context; copying it is free.
#[derive(Clone, Copy)]
pub(crate) struct Acker<'a> {
    pub(crate) client: &'a Client,
    pub(crate) reply: &'a Subject,
}

impl Acker<'_> {
    /// Sends `kind` (ack, nak, progress, term). It is queued, not awaited:
    /// the client flushes it, and on shutdown the app flushes what is left.
    pub(crate) async fn ack_with(self, kind: AckKind) -> Result<(), async_nats::PublishError> {
        self.client.publish(self.reply.clone(), kind.into()).await
    }
}
