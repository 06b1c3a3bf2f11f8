//! # jetwire
//!
//! Message handlers on NATS JetStream. Annotate plain async fns, call one
//! function:
//!
//! ```no_run
//! use jetwire::{queue, subscribe, Context, HandlerError, State};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub struct OrderCreated { pub order_id: u64, pub email: String }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub struct SendEmail { pub to: String, pub body: String }
//!
//! #[derive(Clone)]
//! pub struct Mailer;
//!
//! /// Event: every app with a handler here gets its own copy.
//! #[subscribe("orders.created")]
//! async fn on_order_created(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
//!     ctx.publish("queue.email", &SendEmail { to: order.email, body: "thanks".into() }).await?;
//!     Ok(())
//! }
//!
//! /// Work queue: each job is done once.
//! #[queue("queue.email", max_deliver = 5, backoff = ["1s", "5s", "30s"], concurrency = 8)]
//! async fn send_email(job: SendEmail, _mailer: State<Mailer>) -> Result<(), HandlerError> {
//!     if !job.to.contains('@') {
//!         return Err(HandlerError::permanent("no @ in address")); // dead-lettered now
//!     }
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), jetwire::Error> {
//!     jetwire::App::new(jetwire::Config::from_env()?).state(Mailer).run().await
//! }
//! ```
//!
//! ## Handlers
//! `#[subscribe(subject, ..)]` declares an event handler (every app gets a
//! copy; an app's replicas share the work); `#[queue(subject, ..)]` a
//! work-queue handler (each job done once). The first parameter is the
//! payload, decoded from JSON (or [`Raw`]); after it come [`Context`] and
//! [`State<T>`] in any order. The return type is `Result<(), E>` with
//! `E: Into<HandlerError>`, or `()`. Subjects, options and signatures are
//! checked at compile time.
//!
//! | option | on | default | meaning |
//! |---|---|---|---|
//! | `max_deliver` | both | 5 | deliveries before dead-lettering (>= 1) |
//! | `backoff` | both | `["1s","5s","30s"]` | delay before each redelivery after a transient error; the last repeats; at most `max_deliver - 1` entries |
//! | `ack_wait` | both | `"30s"` | the server redelivers if neither ack nor progress comes in this time |
//! | `concurrency` | both | 16 | handler calls in flight per process (1 = in order) |
//! | `timeout` | both | none | a call running longer fails as transient, reason `timeout` |
//! | `deliver` | subscribe | `"new"` | `"new"` or `"all"`: where a new durable starts |
//! | `durable` | subscribe | `<app>-<fn name>` | the consumer name |
//! | `stream` | both | derived | bind to this stream instead of the default |
//! | `ack` | both | after the call | `"first"`: acknowledged before the call, at most once |
//!
//! ## Outcomes
//! | what happened | outcome | DLQ reason |
//! |---|---|---|
//! | `Ok(())` | ack | — |
//! | transient error, attempt < max_deliver | nak with delay | — |
//! | transient error on the last attempt | dead-letter, then term | `exhausted` |
//! | permanent error | dead-letter, then term | `permanent` |
//! | payload does not decode | dead-letter, then term | `decode` |
//! | handler panicked | as transient; on the last attempt | `panic` |
//! | `timeout` exceeded | as transient; on the last attempt | `timeout` |
//!
//! Test handlers without a server with [`testing::TestApp`].

// Layers, bottom up; each imports only from those below it (ARCHITECTURE.md).
// Ground floor: pure rules.
pub mod classify;
pub mod clock;
mod codecs;
mod config;
mod error;
mod names;
mod observe;
mod partition;
mod policy;
mod text;
// JetStream's wire, and building and sending messages.
mod protocol;
pub mod publish;
// Handlers as registered, and one call of one; services beside them.
mod handler;
mod service;
// Dead letters, and what the server needs.
mod asyncapi;
pub mod directory;
pub mod dlq;
pub mod topology;
// The live loop, and the two ways to run handlers.
mod app;
mod consume;
mod memory;
pub mod testing;

/// Code around a handler: a [`Middleware`](middleware::Middleware) gets each
/// [`Delivery`] and passes it on with [`Next::run`](middleware::Next::run),
/// or settles it without calling the handler. Added with
/// [`App::middleware`] for every handler and [`App::middleware_for`] for
/// one; the first added is the outermost. With feature `tower`,
/// `App::layer` adds any `tower::Layer` over `HandlerService`. `TestApp`
/// runs the same chain.
pub mod middleware {
    #[cfg(feature = "tower")]
    pub use crate::handler::layer::{HandlerLayer, HandlerService};
    pub use crate::handler::middleware::{FromFn, Middleware, Next, from_fn};
}

/// Payload codecs: how a message's bytes become a value and back, and the
/// `Content-Type` that says which.
///
/// A bare payload type is JSON (`order: Order` is `Json<Order>`). A
/// wrapper chooses another codec, as a handler's payload and as a value
/// to publish: `Json`, `MsgPack` (feature `msgpack`), `Cbor`
/// (feature `cbor`), `Protobuf` (feature `protobuf`, prost), and
/// [`Raw`] for the bytes as they came.
///
/// ```
/// # #[cfg(feature = "msgpack")] {
/// use jetwire::codec::MsgPack;
/// use jetwire::{queue, Context, HandlerError};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Resize { width: u32 }
///
/// #[queue("queue.thumbs")]
/// async fn thumb(MsgPack(job): MsgPack<Resize>, ctx: Context) -> Result<(), HandlerError> {
///     ctx.publish("images.resized", &MsgPack(job.width)).await?; // Content-Type: application/msgpack
///     Ok(())
/// }
/// # }
/// ```
///
/// On receipt a `Content-Type` naming another codec than the handler's is
/// dead-lettered `decode`, the error naming both; a message without one
/// is decoded with the handler's codec.
///
/// A codec of your own is a wrapper implementing [`Codec`](codec::Codec),
/// and the two traits that let it be a payload and be published, each
/// one line:
///
/// ```
/// use jetwire::codec::{BoxError, Codec, Encode};
///
/// /// Text, one line per item.
/// struct Lines(Vec<String>);
///
/// impl Codec for Lines {
///     const CONTENT_TYPE: &'static str = "text/plain";
///
///     fn encode(&self) -> Result<Vec<u8>, BoxError> {
///         Ok(self.0.join("\n").into_bytes())
///     }
///
///     fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
///         let text = std::str::from_utf8(bytes)?;
///         Ok(Lines(text.lines().map(str::to_owned).collect()))
///     }
/// }
/// impl jetwire::codec::Payload for Lines {
///     fn decode(payload: jetwire::codec::Bytes, delivery: &jetwire::Delivery) -> Result<Self, jetwire::HandlerError> {
///         jetwire::codec::decode(payload, delivery)
///     }
/// }
/// impl Encode for Lines {
///     fn encoded(&self) -> Result<(Vec<u8>, &'static str), BoxError> {
///         jetwire::codec::encode(self)
///     }
/// }
///
/// #[jetwire::queue("queue.lines")]
/// async fn count(lines: Lines) -> Result<(), jetwire::HandlerError> {
///     tracing::info!(lines = lines.0.len(), "counted");
///     Ok(())
/// }
/// ```
pub mod codec {
    #[cfg(feature = "cbor")]
    pub use crate::codecs::Cbor;
    #[cfg(feature = "msgpack")]
    pub use crate::codecs::MsgPack;
    #[cfg(feature = "protobuf")]
    pub use crate::codecs::Protobuf;
    pub use crate::codecs::{BoxError, Codec, Encode, JSON, Json, encode};
    pub use crate::handler::extract::{Payload, decode};
    /// The bytes of a payload, as `Payload::decode` gets them.
    pub use bytes::Bytes;
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use jetwire_macros::{queue, subscribe};

pub use crate::app::{App, HandlerStats, RunningApp, run};
pub use crate::classify::DlqReason;
pub use crate::config::{
    Auth, Config, ConfigBuilder, Provision, Storage, StreamSettings, Tls, TraceContext,
};
pub use crate::error::{Error, HandlerError, PublishError, PublishErrorKind, ResultExt};
pub use crate::handler::configured::Handler;
pub use crate::handler::context::Context;
pub use crate::handler::delivery::Delivery;
pub use crate::handler::extract::{Envelope, Extension, FromDelivery, Headers, Raw, State};
pub use crate::handler::options::HandlerOptions;
pub use crate::handler::registry;
pub use crate::observe::health::{HandlerHealth, Health};
pub use crate::policy::RetryPause;
pub use crate::protocol::streamed::Output;
pub use crate::publish::{
    BatchError, BatchReceipt, PendingReceipt, PublishOptions, Publisher, Receipt,
};
pub use crate::service::{BoxFuture, Service, ServiceContext};
pub use crate::topology::status;
/// The NATS client jetwire is built on, at the version it uses: for
/// `HeaderMap`, `Client` and the rest without a second dependency.
pub use async_nats;
pub use jetwire_grammar::subject::SubjectError;
