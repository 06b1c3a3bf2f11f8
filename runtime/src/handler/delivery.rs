//! [`Delivery`]: one message on its way through a handler's middleware
//! to the handler, owned by whoever holds it now.

use std::fmt;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::handler::context::Context;

/// One message on its way to its handler: what a middleware gets, may
/// change, and passes on with [`Next::run`](crate::middleware::Next::run);
/// what an extractor ([`FromDelivery`](crate::FromDelivery)) reads.
///
/// The headers and payload are the message's as it came until a
/// middleware changes them; the handler's payload is decoded from
/// [`Delivery::payload`] and its [`Headers`](crate::Headers) are
/// [`Delivery::headers`]. [`Context::headers`] stays the message's own.
/// The extensions carry values from a middleware to the handler
/// ([`Extension`](crate::Extension)).
///
/// ```
/// use jetwire::middleware::Next;
/// use jetwire::{Delivery, HandlerError};
///
/// #[derive(Clone)]
/// struct Tenant(String);
///
/// async fn tenant(mut delivery: Delivery, next: Next) -> Result<(), HandlerError> {
///     let Some(tenant) = delivery.headers().get("tenant").map(|v| v.to_string()) else {
///         return Err(HandlerError::permanent("no tenant header"));
///     };
///     tracing::debug!(handler = delivery.handler(), attempt = delivery.attempt(), %tenant);
///     delivery.extensions_mut().insert(Tenant(tenant));
///     next.run(delivery).await
/// }
/// # let _ = jetwire::middleware::from_fn(tenant);
/// ```
pub struct Delivery {
    payload: Bytes,
    ctx: Context,
    /// The headers once a middleware asked to change them.
    headers: Option<HeaderMap>,
    extensions: http::Extensions,
}

impl Delivery {
    pub(crate) fn new(payload: Bytes, ctx: Context) -> Delivery {
        Delivery {
            payload,
            ctx,
            headers: None,
            extensions: http::Extensions::new(),
        }
    }

    /// The subject the message was published to, without the subject prefix.
    pub fn subject(&self) -> &str {
        self.ctx.subject()
    }

    /// The headers, as the middleware before left them.
    pub fn headers(&self) -> &HeaderMap {
        self.headers.as_ref().unwrap_or_else(|| self.ctx.headers())
    }

    /// The headers, to change for the rest of the chain and the handler.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        let ctx = &self.ctx;
        self.headers.get_or_insert_with(|| ctx.headers().clone())
    }

    /// The payload the handler's is decoded from.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Replaces the payload for the rest of the chain and the handler (a
    /// decompressing or decrypting middleware, say).
    pub fn set_payload(&mut self, payload: impl Into<Bytes>) {
        self.payload = payload.into();
    }

    /// The message's stable id ([`Context::message_id`]).
    pub fn message_id(&self) -> &str {
        self.ctx.message_id()
    }

    /// Which run of the handler this is, from 1 ([`Context::attempt`]).
    pub fn attempt(&self) -> u32 {
        self.ctx.attempt()
    }

    /// The handler's `max_deliver`.
    pub fn max_deliver(&self) -> u32 {
        self.ctx.max_deliver()
    }

    /// The handler's fn name.
    pub fn handler(&self) -> &'static str {
        self.ctx.handler()
    }

    /// The handler's context: stream, sequence, publishing follow-ups.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Values the middleware before inserted.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Values for the rest of the chain and the handler's
    /// [`Extension`](crate::Extension) parameters.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }
}

impl fmt::Debug for Delivery {
    /// The message's place, never its payload or headers (they may hold
    /// what should not reach a log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("handler", &self.handler())
            .field("subject", &self.subject())
            .field("attempt", &self.attempt())
            .field("payload_bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}
