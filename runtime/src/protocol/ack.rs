//! How a delivery is answered: ack, nak, progress or term, sent on its
//! reply subject through the loop's one client.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Client, Subject};

/// The longest redelivery delay the server reads: a Go `time.Duration`,
/// nanoseconds in an `i64` (about 292 years).
const MAX_DELAY: Duration = Duration::from_nanos(i64::MAX as u64);

/// A nak asking for redelivery after `delay` (at once for zero), the delay
/// cut to what the server reads: a longer one would not parse, and the
/// message would come back at once.
pub(crate) fn nak(delay: Duration) -> AckKind {
    if delay.is_zero() {
        AckKind::Nak(None)
    } else {
        AckKind::Nak(Some(delay.min(MAX_DELAY)))
    }
}

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

    /// Acks and waits for the server to confirm it: once this returns
    /// `Ok`, the message is not delivered again.
    pub(crate) async fn ack_confirmed(self) -> Result<(), async_nats::RequestError> {
        let ack: bytes::Bytes = AckKind::Ack.into();
        self.client.request(self.reply.clone(), ack).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delay_is_one_the_server_reads() {
        let body =
            |kind: AckKind| String::from_utf8(bytes::Bytes::from(kind).to_vec()).expect("text");
        assert_eq!(body(nak(Duration::ZERO)), "-NAK");
        assert_eq!(
            body(nak(Duration::from_secs(1))),
            r#"-NAK {"delay":1000000000}"#
        );
        assert_eq!(
            body(nak(Duration::MAX)),
            format!(r#"-NAK {{"delay":{}}}"#, i64::MAX)
        );
    }
}
