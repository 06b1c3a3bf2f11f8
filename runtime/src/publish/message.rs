//! Publishing: the header conventions, [`PublishOptions`], and the message
//! every publish path (a handler's [`Context`](crate::Context), the
//! [`Publisher`], `TestApp`, the dead-letter queue) builds
//! the same way.

use std::fmt;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use jetwire_grammar::subject::{self, Usage};
use serde::Serialize;

use crate::error::PublishError;

/// `Nats-Msg-Id`: JetStream stores a message id once per duplicate window.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// `Content-Type`, always `application/json` for typed publishes.
pub const CONTENT_TYPE: &str = "Content-Type";
/// `Jetwire-Correlation-Id`: carried from every inbound message to what its
/// handler publishes.
pub const CORRELATION_ID: &str = "Jetwire-Correlation-Id";
/// W3C `traceparent`, carried from inbound to outbound when present.
pub const TRACEPARENT: &str = "traceparent";
/// W3C `tracestate`, carried with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

const JSON: &str = "application/json";

/// Per-message options for [`Publisher::publish_with`](crate::Publisher::publish_with)
/// and [`Context::publish_with`](crate::Context::publish_with).
///
/// ```
/// use jetwire::PublishOptions;
///
/// let opts = PublishOptions::new()
///     .message_id("order-42-created")
///     .header("X-Tenant", "acme");
/// ```
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub(crate) message_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl PublishOptions {
    /// No options: a fresh message id, the inherited correlation id.
    pub fn new() -> Self {
        PublishOptions::default()
    }

    /// Sets `Nats-Msg-Id`. Publishing the same id again within the stream's
    /// duplicate window stores the message once.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets `Jetwire-Correlation-Id` instead of inheriting or deriving it.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Adds a header. Names are ASCII without `:` or whitespace; values hold
    /// no CR or LF. A bad one fails the publish with
    /// [`PublishError::InvalidHeader`], and nothing is sent.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A message ready to send; `subject` is without the subject prefix.
#[derive(Clone)]
pub(crate) struct Outbound {
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("subject", &self.subject)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// Where a context's publishes go: JetStream in the live runtime, an
/// in-memory log in `TestApp`.
pub(crate) trait Outlet: Send + Sync + 'static {
    fn send(&self, msg: Outbound) -> BoxFuture<'_, Result<(), PublishError>>;
}

/// What a publish inherits: from the inbound message inside a handler,
/// nothing outside one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inherited {
    pub(crate) correlation_id: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

impl Inherited {
    /// What a message's handler passes on: its correlation id (or, for a
    /// message that had none, its own id) and its trace context.
    pub(crate) fn from_inbound(headers: &HeaderMap, message_id: &str) -> Inherited {
        let get = |k: &str| headers.get(k).map(|v| v.as_str().to_owned());
        Inherited {
            correlation_id: get(CORRELATION_ID).or_else(|| Some(message_id.to_owned())),
            traceparent: get(TRACEPARENT),
            tracestate: get(TRACESTATE),
        }
    }
}

/// A fresh, time-ordered message id.
pub(crate) fn fresh_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Validates, encodes and labels one message.
///
/// `default_id` is used when the options give no message id.
pub(crate) fn build<T: Serialize + ?Sized>(
    subject: &str,
    payload: &T,
    opts: PublishOptions,
    inherited: &Inherited,
    default_id: impl FnOnce() -> String,
) -> Result<Outbound, PublishError> {
    let bytes = serde_json::to_vec(payload).map_err(|source| PublishError::Encode {
        subject: subject.to_owned(),
        source,
    })?;
    build_bytes(
        subject,
        bytes.into(),
        Some(JSON),
        opts,
        inherited,
        default_id,
    )
}

/// [`build`] for bytes as they are, with an optional content type.
pub(crate) fn build_bytes(
    subject: &str,
    payload: Bytes,
    content_type: Option<&str>,
    opts: PublishOptions,
    inherited: &Inherited,
    default_id: impl FnOnce() -> String,
) -> Result<Outbound, PublishError> {
    subject::check(subject, Usage::Publish).map_err(PublishError::InvalidSubject)?;
    let mut headers = HeaderMap::new();
    for (name, value) in &opts.headers {
        check_header(subject, name, value)?;
        headers.append(name.as_str(), value.as_str());
    }
    let id = opts.message_id.unwrap_or_else(default_id);
    check_header(subject, MSG_ID, &id)?;
    let correlation = opts
        .correlation_id
        .or_else(|| inherited.correlation_id.clone());
    let correlation = correlation.unwrap_or_else(|| id.clone());
    check_header(subject, CORRELATION_ID, &correlation)?;
    headers.insert(MSG_ID, id);
    if let Some(ct) = content_type {
        headers.insert(CONTENT_TYPE, ct);
    }
    headers.insert(CORRELATION_ID, correlation);
    if let Some(tp) = &inherited.traceparent
        && headers.get(TRACEPARENT).is_none()
    {
        headers.insert(TRACEPARENT, tp.as_str());
        if let Some(ts) = &inherited.tracestate {
            headers.insert(TRACESTATE, ts.as_str());
        }
    }
    Ok(Outbound {
        subject: subject.to_owned(),
        headers,
        payload,
    })
}

fn check_header(subject: &str, name: &str, value: &str) -> Result<(), PublishError> {
    let invalid = |reason: String| PublishError::InvalidHeader {
        subject: subject.to_owned(),
        reason,
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(invalid(format!(
            "header name {name:?} must be non-empty printable ASCII without `:`"
        )));
    }
    if value.contains(['\r', '\n']) {
        return Err(invalid(format!(
            "value of header `{name}` contains CR or LF"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_id_type_and_correlation() {
        let out = build(
            "orders.created",
            &1u32,
            PublishOptions::new(),
            &Inherited::default(),
            || "id-1".to_owned(),
        )
        .expect("valid");
        let get = |k: &str| out.headers.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(get(MSG_ID).as_deref(), Some("id-1"));
        assert_eq!(get(CONTENT_TYPE).as_deref(), Some("application/json"));
        assert_eq!(get(CORRELATION_ID).as_deref(), Some("id-1"));
        assert_eq!(&out.payload[..], b"1");
    }

    #[test]
    fn carries_correlation_and_trace() {
        let mut inbound = HeaderMap::new();
        inbound.insert(CORRELATION_ID, "corr");
        inbound.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let inherited = Inherited::from_inbound(&inbound, "in-1");
        let out = build(
            "a.b",
            &(),
            PublishOptions::new().message_id("x"),
            &inherited,
            fresh_id,
        )
        .expect("valid");
        assert_eq!(
            out.headers.get(CORRELATION_ID).map(|v| v.as_str()),
            Some("corr")
        );
        assert!(out.headers.get(TRACEPARENT).is_some());
        assert_eq!(out.headers.get(MSG_ID).map(|v| v.as_str()), Some("x"));
    }

    #[test]
    fn rejects_bad_subjects_and_headers() {
        let none = Inherited::default();
        for bad in ["", "a..b", "a.*", "a.>", "a b", "a\r\nb", "$JS.API", "a."] {
            let err = build(bad, &(), PublishOptions::new(), &none, fresh_id).expect_err(bad);
            assert!(
                matches!(err, PublishError::InvalidSubject(_)),
                "{bad:?}: {err}"
            );
        }
        let err = build(
            "a",
            &(),
            PublishOptions::new().header("X:Y", "1"),
            &none,
            fresh_id,
        );
        assert!(matches!(err, Err(PublishError::InvalidHeader { .. })));
        let err = build(
            "a",
            &(),
            PublishOptions::new().header("X", "1\r\n2"),
            &none,
            fresh_id,
        );
        assert!(matches!(err, Err(PublishError::InvalidHeader { .. })));
    }
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

/// Sends to JetStream, with the subject prefix, and waits for the ack.
#[derive(Clone)]
pub(crate) struct JetStreamOutlet {
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) prefix: Option<String>,
    /// Changes when the client connects again ([`crate::Config`]'s connect).
    pub(crate) reconnects: tokio::sync::watch::Receiver<()>,
}

impl JetStreamOutlet {
    /// Sends, returning the future of JetStream's ack.
    pub(crate) async fn send(&self, msg: Outbound) -> Result<PendingReceipt, PublishError> {
        let subject = subject::with_prefix(self.prefix.as_deref(), &msg.subject);
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
            ack,
        })
    }

    /// Sends and waits for JetStream's ack. An ack still awaited when the
    /// connection is lost is gone with it (the server may have restarted
    /// before or after storing the message): once the client is connected
    /// again, the message is sent again under the same `Nats-Msg-Id`, which
    /// the server stores once, instead of waiting out the ack timeout (5 s).
    pub(crate) async fn send_acked(&self, msg: Outbound) -> Result<Receipt, PublishError> {
        let mut reconnects = self.reconnects.clone();
        loop {
            reconnects.mark_unchanged();
            let pending = self.send(msg.clone()).await?;
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
    ack: async_nats::jetstream::context::PublishAckFuture,
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
            let ack = self.ack.await.map_err(|e| PublishError::Ack {
                subject: self.subject,
                source: Box::new(e),
            })?;
            Ok(Receipt {
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }
}

impl Outlet for JetStreamOutlet {
    fn send(&self, msg: Outbound) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move { self.send_acked(msg).await.map(|_| ()) })
    }
}

/// Publishes typed messages from outside handlers: an HTTP endpoint, a
/// script, a test. Cheap to clone.
///
/// Every publish is validated by the same subject rules as the macros
/// (no wildcards), encoded as JSON, labelled with `Nats-Msg-Id` (given, or
/// a fresh UUIDv7), `Content-Type: application/json` and
/// `Jetwire-Correlation-Id`, and waits for JetStream to store it.
///
/// ```no_run
/// # async fn demo() -> Result<(), jetwire::Error> {
/// let config = jetwire::Config::from_env()?;
/// let publisher = jetwire::Publisher::connect(&config).await?;
/// let receipt = publisher.publish("orders.created", &serde_json::json!({"order_id": 1})).await?;
/// println!("stored as {} #{}", receipt.stream, receipt.sequence);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    outlet: JetStreamOutlet,
    client: async_nats::Client,
}

impl Publisher {
    /// Connects with `config`.
    pub async fn connect(config: &crate::Config) -> Result<Publisher, crate::Error> {
        let (client, reconnects) = config.connect().await?;
        let js = async_nats::jetstream::new(client.clone());
        let prefix = config.prefix().map(str::to_owned);
        Ok(Publisher::with_outlet(
            client,
            JetStreamOutlet {
                js,
                prefix,
                reconnects,
            },
        ))
    }

    /// A publisher on `client` through `outlet` (which sends on it).
    pub(crate) fn with_outlet(client: async_nats::Client, outlet: JetStreamOutlet) -> Publisher {
        Publisher { outlet, client }
    }

    /// Publishes `payload` as JSON to `subject` and waits for the JetStream ack.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
    ) -> Result<Receipt, PublishError> {
        self.publish_with(subject, payload, PublishOptions::default())
            .await
    }

    /// [`Publisher::publish`] with options: message id, headers, correlation id.
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        let msg = build(subject, payload, options, &Inherited::default(), fresh_id)?;
        self.outlet.send_acked(msg).await
    }

    /// Sends `payload` and returns at once with a [`PendingReceipt`] to
    /// await later: many messages in flight, one round trip's wait.
    ///
    /// ```no_run
    /// # async fn demo(publisher: jetwire::Publisher) -> Result<(), jetwire::PublishError> {
    /// let mut pending = Vec::new();
    /// for n in 0..1000u32 {
    ///     pending.push(publisher.send("metrics.sample", &n).await?);
    /// }
    /// for receipt in pending {
    ///     receipt.await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
    ) -> Result<PendingReceipt, PublishError> {
        let msg = build(
            subject,
            payload,
            PublishOptions::default(),
            &Inherited::default(),
            fresh_id,
        )?;
        self.outlet.send(msg).await
    }

    /// Publishes bytes as they are (no JSON encoding, no content type), with
    /// a fresh message id: for tests and bridges that carry foreign payloads.
    pub async fn publish_raw(
        &self,
        subject: &str,
        payload: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        let msg = build_bytes(
            subject,
            payload.into(),
            None,
            options,
            &Inherited::default(),
            fresh_id,
        )?;
        self.outlet.send_acked(msg).await
    }

    /// The underlying client, for what jetwire does not wrap.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}
