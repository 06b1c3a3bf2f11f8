//! The message every publish path (a handler's `Context`, the `Publisher`,
//! `TestApp`, the dead-letter queue) builds the same way: the header
//! conventions, [`PublishOptions`], subject and header checks. Pure: no I/O.

use std::fmt;

use async_nats::HeaderMap;
use bytes::Bytes;
use jetwire_grammar::subject::{self, Usage};

use crate::codecs::Encode;
use crate::error::PublishError;
use crate::observe::trace;

/// `Nats-Msg-Id`: JetStream stores a message id once per duplicate window.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// `Content-Type`: the codec of a typed publish (`application/json`
/// unless a [`codec`](crate::codec) wrapper says otherwise).
pub const CONTENT_TYPE: &str = "Content-Type";
/// `Jetwire-Correlation-Id`: carried from every inbound message to what its
/// handler publishes.
pub const CORRELATION_ID: &str = "Jetwire-Correlation-Id";
/// W3C `traceparent`, carried from inbound to outbound when present.
pub const TRACEPARENT: &str = "traceparent";
/// W3C `tracestate`, carried with `traceparent`.
pub const TRACESTATE: &str = "tracestate";
/// `Jetwire-Key`: messages with one key belong together and keep their
/// order ([`PublishOptions::key`]).
pub const KEY: &str = "Jetwire-Key";

/// `Jetwire-Replayed-Id`: on a message replayed from a dead letter, the
/// original's `Nats-Msg-Id`. The replay is stored under an id of its own
/// (so a repeated replay is stored once), and every handler sees the
/// original's as `ctx.message_id()`: a replay of a fanned-out event
/// reaches each app that reads the subject, and the apps that handled
/// the original recognise it by that id.
pub const REPLAYED_ID: &str = "Jetwire-Replayed-Id";

/// `Jetwire-Version`: the version of the payload's schema the publisher
/// wrote ([`PublishOptions::version`]), for handlers that read more than
/// one ([`Context::version`](crate::Context::version)).
pub const VERSION: &str = "Jetwire-Version";

/// Per-message options for `Publisher::publish_with` and
/// `Context::publish_with`.
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

    /// Sets the message's key (header `Jetwire-Key`): messages with one key
    /// belong together and keep their order where jetwire orders them. The
    /// outbox relay publishes them in order; a subject read by a handler
    /// with `partitions = N` takes them to the key's partition
    /// (`<subject>._p<i>`, see [`partition_of`](crate::topology::partition_of)),
    /// where they are handled one at a time, in order.
    pub fn key(self, key: impl Into<String>) -> Self {
        self.header(KEY, key)
    }

    /// Sets the payload's version (header `Jetwire-Version`): a handler
    /// reads it with [`Context::version`](crate::Context::version), and a
    /// dead letter keeps it ([`DeadLetter::version`](crate::dlq::DeadLetter::version)).
    ///
    /// ```
    /// use jetwire::PublishOptions;
    /// use jetwire::publish::Message;
    ///
    /// let m = Message::json("orders.created", &42, PublishOptions::new().version("2")).unwrap();
    /// assert_eq!(m.header("Jetwire-Version"), Some("2"));
    /// ```
    pub fn version(self, version: impl Into<String>) -> Self {
        self.header(VERSION, version)
    }

    /// Adds a header. Names are ASCII without `:` or whitespace; values hold
    /// no CR or LF. A bad one fails the publish with
    /// [`PublishError::InvalidHeader`], and nothing is sent.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A message built and checked, ready to send: its subject (without the
/// subject prefix), headers (`Nats-Msg-Id` and the rest of jetwire's
/// conventions among them) and payload. To keep a message and send it
/// later, as the outbox does, with [`Publisher::send_message`](crate::Publisher::send_message).
///
/// ```
/// use jetwire::publish::Message;
/// use jetwire::PublishOptions;
///
/// let m = Message::json("orders.created", &42, PublishOptions::new().key("order-42")).unwrap();
/// assert_eq!(m.subject(), "orders.created");
/// assert_eq!(m.header("Jetwire-Key"), Some("order-42"));
/// assert!(Message::json("orders.*", &42, PublishOptions::new()).is_err());
/// ```
#[derive(Clone)]
pub struct Message {
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// The name the runtime uses inside.
pub(crate) type Outbound = Message;

impl Message {
    /// `payload` to `subject`, as JSON or in its codec (a wrapper of
    /// [`codec`](crate::codec)), with a fresh message id unless `options`
    /// gives one: checked as every publish is.
    pub fn json<T: Encode + ?Sized>(
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Result<Message, PublishError> {
        build(subject, payload, options, &Inherited::default(), fresh_id)
    }

    /// Bytes as they are (no content type), checked as every publish is.
    pub fn raw(
        subject: &str,
        payload: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<Message, PublishError> {
        build_bytes(
            subject,
            payload.into(),
            None,
            options,
            &Inherited::default(),
            fresh_id,
        )
    }

    /// A message as stored earlier: subject, headers and payload as they
    /// were built. The subject is checked again; the headers are taken as
    /// they are.
    pub fn from_parts(
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<Message, PublishError> {
        subject::check(subject, Usage::Publish).map_err(PublishError::InvalidSubject)?;
        Ok(Message {
            subject: subject.to_owned(),
            headers,
            payload: payload.into(),
        })
    }

    /// The subject, without the subject prefix.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value (its first), the name compared without case,
    /// as NATS compares header names.
    pub fn header(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.headers.get(name) {
            return Some(v.as_str());
        }
        self.headers
            .iter()
            .find(|(key, _)| AsRef::<str>::as_ref(key).eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(|v| v.as_str())
    }

    /// Mutable headers, to add or remove one before sending.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Removes every value of header `name` (compared without case).
    pub fn remove_header(&mut self, name: &str) {
        let mut kept = HeaderMap::new();
        for (key, values) in self.headers.iter() {
            let key: &str = key.as_ref();
            if !key.eq_ignore_ascii_case(name) {
                for v in values {
                    kept.append(key, v.as_str());
                }
            }
        }
        self.headers = kept;
    }

    /// The `Nats-Msg-Id`.
    pub fn message_id(&self) -> Option<&str> {
        self.header(MSG_ID)
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("subject", &self.subject)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
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
pub(crate) fn build<T: Encode + ?Sized>(
    subject: &str,
    payload: &T,
    opts: PublishOptions,
    inherited: &Inherited,
    default_id: impl FnOnce() -> String,
) -> Result<Outbound, PublishError> {
    let (bytes, content_type) = payload
        .encoded()
        .map_err(|e| PublishError::encoding(subject, e))?;
    build_bytes(
        subject,
        bytes.into(),
        Some(content_type),
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
    // Trace context: one the caller set wins; else the current span's
    // (feature `otel`); else the inbound message's, carried as it was.
    if headers.get(TRACEPARENT).is_none()
        && !trace::inject_current(&mut headers)
        && let Some(tp) = &inherited.traceparent
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
