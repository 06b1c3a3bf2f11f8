//! What a handler's parameters and return type may be: the payload
//! ([`Payload`]), the extractors after it ([`FromContext`]), and the output
//! ([`IntoOutcome`]). The macros check each parameter against these traits
//! at its own span, so a wrong type is reported where it is written.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::HandlerError;
use crate::handler::context::Context;

/// A state type a handler needs (`State<T>`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    pub id: TypeId,
    pub name: &'static str,
}

/// The future a handler adapter returns.
#[doc(hidden)]
pub type CallFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'static>>;

/// One message handed to a handler adapter.
#[doc(hidden)]
pub struct Delivery {
    pub(crate) payload: Bytes,
    pub(crate) ctx: Context,
}

impl Delivery {
    pub fn into_parts(self) -> (Bytes, Context) {
        (self.payload, self.ctx)
    }
}

/// Why an adapter did not get an `Ok` from the handler.
#[doc(hidden)]
#[derive(Debug)]
pub enum Failure {
    /// The handler returned an error.
    Handler(HandlerError),
    /// The payload did not decode; the handler was not called.
    Decode(String),
    /// A `State<T>` was missing (the startup check prevents this).
    MissingState(&'static str),
}

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

/// A handler's first parameter: decoded from the message's bytes.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler payload",
    label = "the payload must implement `serde::Deserialize`, or be `jetwire::Raw`",
    note = "the first parameter of a handler is the message, decoded from JSON: add `#[derive(serde::Deserialize)]` to `{Self}`, or take `jetwire::Raw` for the bytes as they came"
)]
pub trait Payload: Sized + Send + 'static {
    /// The payload of the delivery `ctx` describes.
    fn decode(bytes: Bytes, ctx: &Context) -> Result<Self, Failure>;
}

impl<T: DeserializeOwned + Send + 'static> Payload for T {
    fn decode(bytes: Bytes, _ctx: &Context) -> Result<Self, Failure> {
        serde_json::from_slice(&bytes).map_err(|e| Failure::Decode(decode_error(&e, &bytes)))
    }
}

impl Payload for Raw {
    fn decode(bytes: Bytes, _ctx: &Context) -> Result<Self, Failure> {
        Ok(Raw(bytes))
    }
}

fn decode_error(err: &serde_json::Error, bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "empty payload: expected JSON".to_owned();
    }
    format!("invalid JSON payload ({} bytes): {err}", bytes.len())
}

/// A handler parameter after the payload: taken from the delivery's context.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "after the payload, a handler takes only `jetwire::Context` and `jetwire::State<T>`",
    note = "the payload is the first parameter and there is one; other values come in through `State<T>`, given to `App::state`"
)]
pub trait FromContext: Sized {
    fn from_context(ctx: &Context) -> Result<Self, Failure>;
    fn requirement() -> Option<StateKey>;
}

impl FromContext for Context {
    fn from_context(ctx: &Context) -> Result<Self, Failure> {
        Ok(ctx.clone())
    }
    fn requirement() -> Option<StateKey> {
        None
    }
}

impl<T: Clone + Send + Sync + 'static> FromContext for State<T> {
    fn from_context(ctx: &Context) -> Result<Self, Failure> {
        ctx.state::<T>()
            .map(State)
            .ok_or(Failure::MissingState(std::any::type_name::<T>()))
    }
    fn requirement() -> Option<StateKey> {
        Some(StateKey {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        })
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
    fn into_outcome(self) -> Result<(), Failure>;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Result<(), Failure> {
        Ok(())
    }
}

impl<E: Into<HandlerError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), Failure> {
        self.map_err(|e| Failure::Handler(e.into()))
    }
}
