//! Where messages go once built: JetStream in the live runtime (the
//! [`JetStreamOutlet`]), an in-memory log in `TestApp` (the [`Outlet`]
//! trait is what a handler's context publishes through).

use std::fmt;

use futures_util::future::BoxFuture;
use jetwire_grammar::subject;

use crate::error::PublishError;
use crate::observe::metrics;
use crate::publish::message::Outbound;
use crate::publish::partitions::Partitions;

/// Where a context's publishes go: JetStream in the live runtime, an
/// in-memory log in `TestApp`.
pub(crate) trait Outlet: Send + Sync + 'static {
    /// Publishes `msg` and returns once it is stored (in `TestApp`, recorded).
    fn publish(&self, msg: Outbound) -> BoxFuture<'_, Result<(), PublishError>>;
}

/// Where JetStream stored a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence there.
    pub sequence: u64,
    /// Whether the server had already stored this message id: nothing new
    /// was stored. Also true when the connection was lost while the ack
    /// was awaited, jetwire sent the message again, and the first send had
    /// been stored.
    pub duplicate: bool,
}

/// Sends to JetStream, with the subject prefix: [`send_pending`] returns
/// once the message is written, with the ack to await; [`send_confirmed`]
/// waits for the ack, sending again after a reconnect.
///
/// [`send_pending`]: JetStreamOutlet::send_pending
/// [`send_confirmed`]: JetStreamOutlet::send_confirmed
#[derive(Clone)]
pub(crate) struct JetStreamOutlet {
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) prefix: Option<String>,
    /// Changes when the client connects again (see `Config::connect`).
    pub(crate) reconnects: tokio::sync::watch::Receiver<()>,
    /// The partition counts of the subjects keyed messages go to.
    pub(crate) partitions: std::sync::Arc<Partitions>,
}

impl JetStreamOutlet {
    /// The subject `msg` goes to on the server: with the prefix, and in
    /// its partition when it has a key.
    pub(crate) async fn route(&self, msg: &Outbound) -> Result<String, PublishError> {
        let subject = subject::with_prefix(self.prefix.as_deref(), &msg.subject);
        self.partitions
            .route(&self.js, subject, &msg.headers)
            .await
            .map_err(|source| PublishError::Send {
                subject: msg.subject.clone(),
                source,
            })
    }

    /// Sends, returning the future of JetStream's ack: nothing is
    /// confirmed until it is awaited.
    pub(crate) async fn send_pending(&self, msg: Outbound) -> Result<PendingReceipt, PublishError> {
        let subject = self.route(&msg).await?;
        let ack = self
            .js
            .publish_with_headers(subject, msg.headers, msg.payload)
            .await
            .map_err(|e| PublishError::Send {
                subject: msg.subject.clone(),
                source: Box::new(e),
            })?;
        Ok(PendingReceipt {
            subject: msg.subject,
            ack: Ack::Server(ack),
        })
    }

    /// Sends and waits for JetStream's ack. An ack still awaited when the
    /// connection is lost is gone with it (the server may have restarted
    /// before or after storing the message): once the client is connected
    /// again, the message is sent again under the same `Nats-Msg-Id`, which
    /// the server stores once, instead of waiting out the ack timeout (5 s).
    pub(crate) async fn send_confirmed(&self, msg: Outbound) -> Result<Receipt, PublishError> {
        let mut reconnects = self.reconnects.clone();
        loop {
            reconnects.mark_unchanged();
            let pending = self.send_pending(msg.clone()).await?;
            tokio::select! {
                receipt = pending.into_future() => return receipt,
                Ok(()) = reconnects.changed() => {
                    tracing::debug!(subject = %msg.subject, "connected again while waiting for an ack; sending again");
                }
            }
        }
    }
}

/// A message sent but not yet confirmed: await it for the [`Receipt`].
/// Sending many and awaiting their receipts later pipelines the acks.
#[must_use = "a publish is confirmed only once its receipt is awaited"]
pub struct PendingReceipt {
    subject: String,
    ack: Ack,
}

/// What a [`PendingReceipt`] waits for.
enum Ack {
    /// The server's ack.
    Server(async_nats::jetstream::context::PublishAckFuture),
    /// Nothing: stored already, in memory (`NATS_URL=memory://`).
    Stored(Receipt),
}

impl PendingReceipt {
    /// A receipt for a message stored already.
    pub(crate) fn stored(subject: String, receipt: Receipt) -> PendingReceipt {
        PendingReceipt {
            subject,
            ack: Ack::Stored(receipt),
        }
    }
}

impl fmt::Debug for PendingReceipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReceipt")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl std::future::IntoFuture for PendingReceipt {
    type Output = Result<Receipt, PublishError>;
    type IntoFuture = BoxFuture<'static, Result<Receipt, PublishError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ack = match self.ack {
                Ack::Server(ack) => ack,
                Ack::Stored(receipt) => return Ok(receipt),
            };
            let ack = ack.await.map_err(|e| PublishError::Ack {
                subject: self.subject,
                source: Box::new(e),
            })?;
            metrics::published(&ack.stream);
            Ok(Receipt {
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }
}

impl Outlet for JetStreamOutlet {
    fn publish(&self, msg: Outbound) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move { self.send_confirmed(msg).await.map(|_| ()) })
    }
}
