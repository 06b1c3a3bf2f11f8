//! What a handler's parameters and return type may be: the payload
//! ([`Payload`]), the extractors after it ([`FromDelivery`]), and the output
//! ([`IntoOutcome`]). The macros check each parameter against these traits
//! at its own span, so a wrong type is reported where it is written.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::codecs::{self, Codec, Readable};
use crate::error::HandlerError;
use crate::handler::context::Context;
use crate::handler::delivery::Delivery;

/// A state type a handler needs (`State<T>`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    pub id: TypeId,
    pub name: &'static str,
}

/// The future a handler adapter returns: the handler's result, or why it
/// was not called (a payload that did not decode, an extractor's error).
#[doc(hidden)]
pub type CallFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

#[doc(hidden)]
/// A handler's call, as its definition keeps it: the expansion's adapter
/// or a fn registered in code, boxed once for the life of the process.
pub type CallFn = &'static (dyn Fn(Delivery) -> CallFuture + Send + Sync);

/// The bytes of a message as they came, undecoded. Accepted as a payload.
///
/// ```
/// use jetwire::{queue, HandlerError, Raw};
///
/// #[queue("queue.raw")]
/// async fn store(raw: Raw) -> Result<(), HandlerError> {
///     let _len = raw.len();
///     Ok(())
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Raw(Bytes);

impl Raw {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Raw {
        Raw(bytes.into())
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Decodes the bytes as JSON.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "Raw({s:?})"),
            Err(_) => write!(f, "Raw({} bytes)", self.0.len()),
        }
    }
}

/// A payload in a versioned envelope, `{"version": "..", "payload": ..}`:
/// take it as a handler's payload to decode one, publish one to write it.
///
/// ```
/// use jetwire::{queue, Envelope, HandlerError};
///
/// #[queue("queue.enveloped")]
/// async fn enveloped(job: Envelope<serde_json::Value>) -> Result<(), HandlerError> {
///     match job.version.as_str() {
///         "1" | "2" => Ok(()),
///         other => Err(HandlerError::permanent(format!("unknown version {other}"))),
///     }
/// }
///
/// let json = serde_json::to_string(&Envelope::new("2", 42)).unwrap();
/// assert_eq!(json, r#"{"version":"2","payload":42}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope<T> {
    /// The payload's version.
    pub version: String,
    /// The payload.
    pub payload: T,
}

/// `{"version": string, "payload": T}` in the AsyncAPI document.
#[cfg(feature = "asyncapi")]
impl<T: schemars::JsonSchema> schemars::JsonSchema for Envelope<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Envelope_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let payload = generator.subschema_for::<T>();
        schemars::json_schema!({
            "type": "object",
            "properties": {
                "version": { "type": "string" },
                "payload": payload,
            },
            "required": ["version", "payload"],
        })
    }
}

impl<T> Envelope<T> {
    /// `payload` at `version`.
    pub fn new(version: impl Into<String>, payload: T) -> Envelope<T> {
        Envelope {
            version: version.into(),
            payload,
        }
    }
}

/// A value given to `App::state` (or `TestApp::state`), cloned into each
/// call. Wrap large or shared values in an `Arc`.
///
/// `State<T>` derefs to `T`, and its field is public so a parameter can
/// destructure it: `State(mailer): State<Mailer>`. With a tuple struct
/// `T`, mind that `state.0` is the `T` itself; its first field is
/// `state.0.0` (or destructure).
///
/// ```
/// use jetwire::{queue, HandlerError, State};
///
/// #[derive(Clone)]
/// struct Mailer { from: String }
///
/// #[queue("queue.welcome")]
/// async fn welcome(to: String, mailer: State<Mailer>) -> Result<(), HandlerError> {
///     let _from: &str = &mailer.from; // derefs to Mailer
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A handler's first parameter: decoded from the delivery's payload.
/// Any `Deserialize` type is (as JSON), and [`Raw`], a `DeadLetter`, and
/// each codec's wrapper ([`Json`](crate::codec::Json), `MsgPack`, `Cbor`, `Protobuf`). For a
/// [`Codec`] of your own, [`decode`] is the whole method:
///
/// ```
/// use jetwire::codec::{self, BoxError, Codec, Payload};
/// use jetwire::{Delivery, HandlerError};
///
/// struct Csv(Vec<String>);
///
/// impl Codec for Csv {
///     const CONTENT_TYPE: &'static str = "text/csv";
///     fn encode(&self) -> Result<Vec<u8>, BoxError> {
///         Ok(self.0.join(",").into_bytes())
///     }
///     fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
///         Ok(Csv(std::str::from_utf8(bytes)?.split(',').map(str::to_owned).collect()))
///     }
/// }
///
/// impl Payload for Csv {
///     fn decode(payload: codec::Bytes, delivery: &Delivery) -> Result<Self, HandlerError> {
///         codec::decode(payload, delivery)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler payload",
    label = "the payload must implement `serde::Deserialize`, or be `jetwire::Raw`",
    note = "the first parameter of a handler is the message, decoded from JSON: add `#[derive(serde::Deserialize)]` to `{Self}`, or take `jetwire::Raw` for the bytes as they came"
)]
pub trait Payload: Sized + Send + 'static {
    /// Whether it is a dead letter, read from `dlq.` subjects.
    #[doc(hidden)]
    const DEAD_LETTERS: bool = false;

    /// The content type it reads, for the AsyncAPI document; `None`: any
    /// bytes (`application/octet-stream`).
    #[doc(hidden)]
    const CONTENT_TYPE_READ: Option<&'static str> = None;

    /// The payload of `delivery`, from its bytes `payload`. A failure is
    /// settled before the handler runs (a `decode` error from [`decode`]
    /// is dead-lettered as `decode`, never retried).
    fn decode(payload: Bytes, delivery: &Delivery) -> Result<Self, HandlerError>;
}

impl<T: DeserializeOwned + Send + 'static> Payload for T {
    const CONTENT_TYPE_READ: Option<&'static str> = Some(codecs::JSON);

    fn decode(payload: Bytes, delivery: &Delivery) -> Result<Self, HandlerError> {
        content_type_is(delivery, codecs::JSON, &[])?;
        serde_json::from_slice(&payload)
            .map_err(|e| HandlerError::decode(decode_error(&e, &payload)))
    }
}

impl Payload for Raw {
    fn decode(payload: Bytes, _delivery: &Delivery) -> Result<Self, HandlerError> {
        Ok(Raw(payload))
    }
}

/// [`Payload::decode`] for a [`Codec`] of your own: a `Content-Type`
/// naming another codec is a `decode` error naming both.
pub fn decode<C: Codec>(payload: Bytes, delivery: &Delivery) -> Result<C, HandlerError> {
    read_as(payload, delivery, C::CONTENT_TYPE, C::ALIASES, C::decode)
}

fn content_type_is(
    delivery: &Delivery,
    want: &'static str,
    aliases: &[&str],
) -> Result<(), HandlerError> {
    codecs::check_content_type(content_type(delivery.headers()), want, aliases)
        .map_err(HandlerError::decode)
}

/// The `Content-Type` header, its name compared without case. Read by
/// walking the few headers a message has: a lookup by name would build
/// (and allocate) a header name for every message.
fn content_type(headers: &async_nats::HeaderMap) -> Option<&str> {
    if headers.is_empty() {
        return None;
    }
    let name = crate::publish::message::CONTENT_TYPE;
    headers
        .iter()
        .find(|(key, _)| AsRef::<str>::as_ref(key).eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(|v| v.as_str())
}

fn read_as<T>(
    payload: Bytes,
    delivery: &Delivery,
    want: &'static str,
    aliases: &[&str],
    read: impl FnOnce(&[u8]) -> Result<T, codecs::BoxError>,
) -> Result<T, HandlerError> {
    content_type_is(delivery, want, aliases)?;
    read(&payload).map_err(|e| {
        HandlerError::decode(format!(
            "the payload ({} bytes) does not decode as {want}: {e}",
            payload.len()
        ))
    })
}

/// A codec's wrapper as a payload: its content type checked, then read.
macro_rules! wrapper_payload {
    ($($(#[$cfg:meta])* $wrapper:ident),*) => {$(
        $(#[$cfg])*
        impl<T> Payload for codecs::$wrapper<T>
        where
            codecs::$wrapper<T>: Readable,
        {
            const CONTENT_TYPE_READ: Option<&'static str> = Some(<Self as Readable>::CONTENT_TYPE);

            fn decode(payload: Bytes, delivery: &Delivery) -> Result<Self, HandlerError> {
                let (want, aliases) = (<Self as Readable>::CONTENT_TYPE, <Self as Readable>::ALIASES);
                read_as(payload, delivery, want, aliases, <Self as Readable>::read)
            }
        }
    )*};
}

wrapper_payload!(
    Json,
    #[cfg(feature = "msgpack")]
    MsgPack,
    #[cfg(feature = "cbor")]
    Cbor,
    #[cfg(feature = "protobuf")]
    Protobuf
);

fn decode_error(err: &serde_json::Error, bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "empty payload: expected JSON".to_owned();
    }
    format!("invalid JSON payload ({} bytes): {err}", bytes.len())
}

/// A handler parameter after the payload, taken from the [`Delivery`]:
/// what axum's `FromRequestParts` is to a request. Built in: [`Context`],
/// [`State<T>`], [`Extension<T>`] and [`Headers`]; implement it for a type
/// of your own to take it as a parameter.
///
/// An extractor's error is settled like the handler's: the handler is not
/// called, and a permanent error dead-letters the message.
///
/// ```
/// use jetwire::{queue, Delivery, FromDelivery, HandlerError};
///
/// /// The `tenant` header, required.
/// struct Tenant(String);
///
/// impl FromDelivery for Tenant {
///     async fn from_delivery(delivery: &Delivery) -> Result<Self, HandlerError> {
///         match delivery.headers().get("tenant") {
///             Some(t) => Ok(Tenant(t.to_string())),
///             None => Err(HandlerError::permanent("no tenant header")),
///         }
///     }
/// }
///
/// #[queue("queue.invoices")]
/// async fn invoice(amount: u64, Tenant(tenant): Tenant) -> Result<(), HandlerError> {
///     tracing::info!(%tenant, amount, "invoicing");
///     Ok(())
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "after the payload, a handler takes only types that implement `jetwire::FromDelivery`",
    note = "`Context`, `State<T>`, `Extension<T>` and `Headers` implement it; implement `FromDelivery` for `{Self}`, or give a value to `App::state` and take `State<{Self}>`"
)]
pub trait FromDelivery: Sized + Send {
    /// Takes the value from the delivery.
    fn from_delivery(
        delivery: &Delivery,
    ) -> impl Future<Output = Result<Self, HandlerError>> + Send;

    /// The state the app must have for this to succeed, checked at startup.
    #[doc(hidden)]
    fn requirement() -> Option<StateKey> {
        None
    }
}

impl FromDelivery for Context {
    async fn from_delivery(delivery: &Delivery) -> Result<Self, HandlerError> {
        Ok(delivery.context().clone())
    }
}

impl<T: Clone + Send + Sync + 'static> FromDelivery for State<T> {
    async fn from_delivery(delivery: &Delivery) -> Result<Self, HandlerError> {
        delivery.context().state::<T>().map(State).ok_or_else(|| {
            HandlerError::permanent(format!(
                "no `{}` was given to App::state",
                std::any::type_name::<T>()
            ))
        })
    }
    fn requirement() -> Option<StateKey> {
        Some(StateKey {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        })
    }
}

/// A value a middleware inserted into the delivery's extensions
/// ([`Delivery::extensions_mut`]). Without one, the handler is not called
/// and the message is dead-lettered as `permanent`, naming the type.
///
/// ```
/// use jetwire::middleware::{from_fn, Next};
/// use jetwire::{queue, App, Delivery, Extension, HandlerError};
///
/// #[derive(Clone)]
/// struct Started(std::time::Instant);
///
/// async fn clock(mut delivery: Delivery, next: Next) -> Result<(), HandlerError> {
///     delivery.extensions_mut().insert(Started(std::time::Instant::now()));
///     next.run(delivery).await
/// }
///
/// #[queue("queue.timed")]
/// async fn timed(_job: u64, Extension(started): Extension<Started>) -> Result<(), HandlerError> {
///     let _waited = started.0.elapsed();
///     Ok(())
/// }
/// # fn wire(app: App) -> App { app.middleware(from_fn(clock)) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Extension<T>(pub T);

impl<T> Deref for Extension<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone + Send + Sync + 'static> FromDelivery for Extension<T> {
    async fn from_delivery(delivery: &Delivery) -> Result<Self, HandlerError> {
        delivery
            .extensions()
            .get::<T>()
            .cloned()
            .map(Extension)
            .ok_or_else(|| {
                HandlerError::permanent(format!(
                    "no `{}` extension: no middleware inserted one",
                    std::any::type_name::<T>()
                ))
            })
    }
}

/// The delivery's headers, as the middleware left them
/// ([`Delivery::headers`]).
///
/// ```
/// use jetwire::{subscribe, HandlerError, Headers};
///
/// #[subscribe("orders.created")]
/// async fn audit(_order: serde_json::Value, headers: Headers) -> Result<(), HandlerError> {
///     let _source = headers.get("source").map(|v| v.as_str());
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Headers(pub async_nats::HeaderMap);

impl Deref for Headers {
    type Target = async_nats::HeaderMap;
    fn deref(&self) -> &async_nats::HeaderMap {
        &self.0
    }
}

impl FromDelivery for Headers {
    async fn from_delivery(delivery: &Delivery) -> Result<Self, HandlerError> {
        Ok(Headers(delivery.headers().clone()))
    }
}

/// What a handler may return.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler return type",
    label = "return `Result<(), E>` with `E: Into<jetwire::HandlerError>`, or `()`; a value goes out with `output = \"subject\"` and `Result<T, E>`",
    note = "any `std::error::Error + Send + Sync + 'static` converts into `HandlerError` as a transient error"
)]
pub trait IntoOutcome {
    fn into_outcome(self) -> Result<(), HandlerError>;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<E: Into<HandlerError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}
