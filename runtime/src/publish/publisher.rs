//! [`Publisher`]: publishing from outside handlers.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::codecs::Encode;
use crate::config::{Config, Provision, Reconnects, watch_reconnects};
use crate::error::{Error, PublishError};
use crate::protocol::signals::{self, Signals};
use crate::protocol::streamed::{self, Output};
use crate::publish::local::{self, Local};
use crate::publish::message::{Inherited, Message, Outbound, PublishOptions, build, fresh_id};
use crate::publish::outlet::{JetStreamOutlet, PendingReceipt, Receipt};
use futures_util::stream::BoxStream;

/// Publishes typed messages from outside handlers: an HTTP endpoint, a
/// script, a test. Cheap to clone.
///
/// Every publish is validated by the same subject rules as the macros
/// (no wildcards), encoded as JSON, labelled with `Nats-Msg-Id` (given, or
/// a fresh UUIDv7), `Content-Type: application/json` and
/// `Jetwire-Correlation-Id`, and waits for JetStream to store it.
///
/// With `NATS_URL=memory://` it publishes to the app running in this
/// process instead (see [`Config::in_memory`]): stored once taken in.
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
    wire: Wire,
    config: Arc<Config>,
}

/// Where a publisher's messages go.
#[derive(Clone)]
enum Wire {
    /// Shared: cloning a publisher copies a pointer.
    Nats(Arc<Nats>),
    /// The app on `memory://` of this process.
    Memory(Arc<dyn Local>),
}

struct Nats {
    outlet: JetStreamOutlet,
    client: async_nats::Client,
    /// The signals bucket, bound at the first signal and kept.
    signals: Arc<signals::Bucket>,
    /// The bucket of streamed output, bound when first followed.
    output: Arc<streamed::Bucket>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects with `config`; with `NATS_URL=memory://`, to the app
    /// started in memory in this process.
    pub async fn connect(config: &Config) -> Result<Publisher, Error> {
        if config.in_memory() {
            return Ok(Publisher::in_memory(
                local::current()?,
                Arc::new(config.clone()),
            ));
        }
        let (client, reconnects) = config.connect().await?;
        Ok(Publisher::on(client, reconnects, config))
    }

    /// A publisher on a connection the caller made; `config` gives the
    /// subject prefix and stream settings (its URL, credentials and TLS
    /// are not used).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = jetwire::async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let publisher = jetwire::Publisher::from_client(client, &jetwire::Config::from_env()?);
    /// publisher.publish("orders.created", &serde_json::json!({"order_id": 1})).await?;
    /// # Ok(()) }
    /// ```
    pub fn from_client(client: async_nats::Client, config: &Config) -> Publisher {
        let reconnects = watch_reconnects(&client);
        Publisher::on(client, reconnects, config)
    }

    fn on(client: async_nats::Client, reconnects: Reconnects, config: &Config) -> Publisher {
        let js = config.jetstream(client.clone());
        let prefix = config.prefix().map(str::to_owned);
        Publisher::with_outlet(
            client,
            JetStreamOutlet {
                js,
                prefix,
                reconnects,
                partitions: Arc::default(),
            },
            Arc::new(config.clone()),
        )
    }

    /// A publisher on `client` through `outlet` (which sends on it).
    pub(crate) fn with_outlet(
        client: async_nats::Client,
        outlet: JetStreamOutlet,
        config: Arc<Config>,
    ) -> Publisher {
        let create = config.provision == Provision::Create;
        let made = || create.then(|| (config.replicas(), config.storage()));
        let signals = Arc::new(signals::Bucket::new(
            outlet.js.clone(),
            config.prefix(),
            made(),
        ));
        let output = Arc::new(streamed::Bucket::new(
            outlet.js.clone(),
            config.prefix(),
            made(),
        ));
        Publisher {
            wire: Wire::Nats(Arc::new(Nats {
                outlet,
                client,
                signals,
                output,
            })),
            config,
        }
    }

    /// A publisher to the app running in memory.
    pub(crate) fn in_memory(local: Arc<dyn Local>, config: Arc<Config>) -> Publisher {
        Publisher {
            wire: Wire::Memory(local),
            config,
        }
    }

    /// The JetStream context and config it publishes with; `doing` says
    /// what needs them, for the error on `memory://`, which has no server.
    pub(crate) fn parts(
        &self,
        doing: &str,
    ) -> Result<(&async_nats::jetstream::Context, &Config), Error> {
        match &self.wire {
            Wire::Nats(nats) => Ok((&nats.outlet.js, &self.config)),
            Wire::Memory(_) => Err(Error::Config(format!(
                "{doing} needs a NATS server, and NATS_URL=memory:// has none: set NATS_URL to a server's URL"
            ))),
        }
    }

    /// The outlet and client it sends with; `None` on `memory://`.
    pub(super) fn on_nats(&self) -> Option<(&JetStreamOutlet, &async_nats::Client)> {
        match &self.wire {
            Wire::Nats(nats) => Some((&nats.outlet, &nats.client)),
            Wire::Memory(_) => None,
        }
    }

    /// The config it publishes with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Stores `msg` and waits for it to be stored.
    async fn confirmed(&self, msg: Outbound) -> Result<Receipt, PublishError> {
        match &self.wire {
            Wire::Nats(nats) => nats.outlet.send_confirmed(msg).await,
            Wire::Memory(local) => local.publish(msg),
        }
    }

    /// Sends `msg`, its receipt to await.
    pub(super) async fn pending(&self, msg: Outbound) -> Result<PendingReceipt, PublishError> {
        match &self.wire {
            Wire::Nats(nats) => nats.outlet.send_pending(msg).await,
            Wire::Memory(local) => {
                let subject = msg.subject.clone();
                local
                    .publish(msg)
                    .map(|receipt| PendingReceipt::stored(subject, receipt))
            }
        }
    }

    /// The stream that captures `subject` (without the subject prefix),
    /// as the server says now; `None` when no stream does. What tells a
    /// publish that got no answer ([`crate::PublishErrorKind::NoResponders`])
    /// from a subject nothing stores: a stream that has no leader for a
    /// moment is still found.
    ///
    /// ```no_run
    /// # async fn f(publisher: jetwire::Publisher) -> Result<(), jetwire::Error> {
    /// match publisher.stream_of("orders.created").await? {
    ///     Some(stream) => println!("stored in {stream}"),
    ///     None => println!("no stream captures orders.created"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream_of(&self, subject: &str) -> Result<Option<String>, Error> {
        use async_nats::jetstream::context::GetStreamByNameErrorKind;
        let full = jetwire_grammar::subject::with_prefix(self.config.prefix(), subject);
        let (js, _) = self.parts("Publisher::stream_of")?;
        match js.stream_by_subject(full.as_str()).await {
            Ok(name) => Ok(Some(name)),
            Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::nats(
                format!("looking up the stream of `{subject}`"),
                e,
            )),
        }
    }

    /// Follows what `handler` streams while it handles the message whose
    /// id is `message_id` ([`Context::stream_output`](crate::Context::stream_output)):
    /// every item from the first, then each as it is written, ending after
    /// the end of the last delivery (acked, dead-lettered, discarded or
    /// continued). A retried or paused delivery ends with `last: false`,
    /// and the next delivery's chunks follow; a delivery cut short (its
    /// process killed, the shutdown timeout) has no end, and the next
    /// delivery's chunks, with a higher `delivery`, follow it just the
    /// same. Start following before or
    /// after the publish: nothing is missed. Wrap it in a timeout to stop
    /// waiting for a handler that is not running.
    ///
    /// ```no_run
    /// # async fn f(publisher: jetwire::Publisher) -> Result<(), jetwire::Error> {
    /// use futures_util::StreamExt;
    /// use jetwire::Output;
    ///
    /// let mut output = publisher.follow_output("report-42", "summarize").await?;
    /// while let Some(item) = output.next().await {
    ///     match item? {
    ///         Output::Chunk { payload, .. } => println!("{}", String::from_utf8_lossy(&payload)),
    ///         Output::End { last: false, .. } => println!("-- the handler runs again --"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn follow_output(
        &self,
        message_id: &str,
        handler: &str,
    ) -> Result<BoxStream<'static, Result<Output, Error>>, Error> {
        let keys = streamed::keys(message_id, handler);
        match &self.wire {
            Wire::Nats(nats) => nats.output.follow(keys).await,
            Wire::Memory(local) => Ok(local.follow(keys)),
        }
    }

    /// Sends signal `name` with `value` to the handler of the message whose
    /// id is `message_id` (its `Nats-Msg-Id`, what `ctx.message_id()`
    /// says), which receives it from
    /// [`Context::wait_for_signal`](crate::Context::wait_for_signal),
    /// whether it waits already or starts to later.
    ///
    /// ```no_run
    /// # async fn f(publisher: jetwire::Publisher) -> Result<(), jetwire::Error> {
    /// publisher.signal("payout-42", "approved", &"alice").await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        message_id: &str,
        name: &str,
        value: &T,
    ) -> Result<(), Error> {
        let value = serde_json::to_vec(value)
            .map_err(|e| Error::Signal(format!("`{name}` does not encode as JSON: {e}")))?;
        if value.len() > signals::MAX_SIGNAL {
            return Err(Error::Signal(format!(
                "`{name}` is {} bytes, over the limit of {}",
                value.len(),
                signals::MAX_SIGNAL
            )));
        }
        let key = signals::key(message_id, name);
        match &self.wire {
            Wire::Nats(nats) => nats.signals.send(key, value.into()).await,
            Wire::Memory(local) => {
                local.signal(key, value.into());
                Ok(())
            }
        }
    }

    /// Publishes `payload` as JSON to `subject` and waits for the JetStream ack.
    pub async fn publish<T: Encode + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
    ) -> Result<Receipt, PublishError> {
        self.publish_with(subject, payload, PublishOptions::default())
            .await
    }

    /// [`Publisher::publish`] with options: message id, headers, correlation id.
    pub async fn publish_with<T: Encode + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        let msg = build(subject, payload, options, &Inherited::default(), fresh_id)?;
        self.confirmed(msg).await
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
        self.pending(msg).await
    }

    /// Publishes bytes as they are (no JSON encoding, no content type), with
    /// a fresh message id: for tests and bridges that carry foreign payloads.
    pub async fn publish_raw(
        &self,
        subject: &str,
        payload: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        self.confirmed(Message::raw(subject, payload, options)?)
            .await
    }

    /// Sends a [`Message`] built earlier and returns once it is written,
    /// with its receipt to await: many in flight, one round trip's wait.
    pub async fn send_message(&self, message: Message) -> Result<PendingReceipt, PublishError> {
        self.pending(message).await
    }

    /// Sends a [`Message`] built earlier and waits for JetStream to store
    /// it, sending it again under the same id after a reconnect.
    pub async fn publish_message(&self, message: Message) -> Result<Receipt, PublishError> {
        self.confirmed(message).await
    }

    /// The underlying client, for what jetwire does not wrap.
    ///
    /// # Panics
    /// With `NATS_URL=memory://`, which has no connection: see
    /// [`Publisher::nats_client`] for code that runs on both.
    pub fn client(&self) -> &async_nats::Client {
        self.nats_client().unwrap_or_else(|| {
            panic!("Publisher::client: NATS_URL=memory:// has no NATS connection; use Publisher::nats_client, which says so")
        })
    }

    /// The underlying client, or `None` with `NATS_URL=memory://`.
    ///
    /// ```no_run
    /// # async fn f(publisher: jetwire::Publisher) {
    /// if let Some(client) = publisher.nats_client() {
    ///     println!("connected to {}", client.server_info().server_name);
    /// }
    /// # }
    /// ```
    pub fn nats_client(&self) -> Option<&async_nats::Client> {
        match &self.wire {
            Wire::Nats(nats) => Some(&nats.client),
            Wire::Memory(_) => None,
        }
    }
}
