//! [`Context`]: what a handler knows about the message it handles, and how
//! it publishes follow-ups.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::SystemTime;

use async_nats::jetstream::AckKind;
use async_nats::{Client, HeaderMap};
use jetwire_grammar::subject::{self, SubjectError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::classify::{Acked, Kept};
use crate::codecs::Encode;
use crate::error::{Error, PublishError};
use crate::handler::state::States;
use crate::protocol::ack::Acker;
use crate::protocol::checkpoints::{self, Checkpoints, MAX_CHECKPOINT};
use crate::protocol::signals::{self, Signals};
use crate::protocol::streamed::Streamed;
use crate::publish::message::{self, Inherited, PublishOptions};
use crate::publish::outlet::Outlet;

pub(crate) use crate::handler::meta::{Meta, Origin, Route};

/// The message being handled, and a way to publish follow-ups that carry
/// its correlation id and trace context. Cheap to clone.
///
/// Take it as any parameter after the payload:
///
/// ```
/// use jetwire::{subscribe, Context, HandlerError};
///
/// #[subscribe("users.signed-up")]
/// async fn greet(user: String, ctx: Context) -> Result<(), HandlerError> {
///     if ctx.attempt() > 1 {
///         tracing::info!(attempt = ctx.attempt(), "retrying");
///     }
///     ctx.publish("queue.welcome-mail", &user).await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Meta,
    published: AtomicU32,
    /// Chunks of output streamed by this call ([`Context::stream_output`]).
    streamed: AtomicU32,
    /// A checkpoint of this message was saved or found: it is removed
    /// once the message is settled.
    checkpointed: AtomicBool,
    /// Acknowledged before the call ended: by jetwire first, or by
    /// [`Context::ack`].
    acked: AtomicBool,
    env: Arc<Env>,
}

/// What every call of a handler shares.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) states: Arc<States>,
    /// Where publishes go.
    pub(crate) outlet: Arc<dyn Outlet>,
    /// The client a live delivery is answered through (on `meta.reply`);
    /// `TestApp`'s have none.
    pub(crate) acks: Option<Arc<Client>>,
    /// Cancelled when the app starts to drain.
    pub(crate) draining: CancellationToken,
    /// Where checkpoints are kept.
    pub(crate) checkpoints: Arc<dyn Checkpoints>,
    /// Where signals wait.
    pub(crate) signals: Arc<dyn Signals>,
    /// Where streamed output goes.
    pub(crate) streamed: Arc<dyn Streamed>,
}

impl Context {
    pub(crate) fn new(meta: Meta, env: Arc<Env>) -> Context {
        Context {
            inner: Arc::new(Inner {
                meta,
                published: AtomicU32::new(0),
                streamed: AtomicU32::new(0),
                checkpointed: AtomicBool::new(false),
                acked: AtomicBool::new(false),
                env,
            }),
        }
    }

    /// The subject the message was published to, without the subject prefix.
    pub fn subject(&self) -> &str {
        self.inner.meta.subject()
    }

    /// The message's headers as they came.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.meta.headers
    }

    /// A stable, unique id for this message, for idempotent handlers: its
    /// `Nats-Msg-Id` if it has one, else `<stream>:<sequence>`. The same on
    /// every redelivery, and on a replay of its dead letter (which carries
    /// the original's as `Jetwire-Replayed-Id`).
    pub fn message_id(&self) -> &str {
        self.inner.meta.message_id()
    }

    /// The conversation this message belongs to: its
    /// `Jetwire-Correlation-Id`, or, for a message that started one, its
    /// own message id. What this handler publishes carries the same.
    pub fn correlation_id(&self) -> &str {
        let meta = &self.inner.meta;
        match meta.headers.get(message::CORRELATION_ID) {
            Some(id) => id.as_str(),
            None => meta.message_id(),
        }
    }

    /// Resolves when the app starts to drain (a signal, or
    /// [`RunningApp::shutdown`](crate::RunningApp::shutdown)): a long call
    /// can save its state (a checkpoint, a follow-up) and return before
    /// `shutdown_timeout` interrupts it. What it returns is settled as
    /// usual: `Ok` is acked.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jetwire::{queue, Context, HandlerError};
    ///
    /// #[queue("queue.crawl")]
    /// async fn crawl(site: String, ctx: Context) -> Result<(), HandlerError> {
    ///     for page in 0..1000u32 {
    ///         tokio::select! {
    ///             _ = ctx.shutdown() => {
    ///                 // Hand the rest back as a new job, and finish this one.
    ///                 ctx.publish("queue.crawl-from", &(site.as_str(), page)).await?;
    ///                 return Ok(());
    ///             }
    ///             _ = tokio::time::sleep(Duration::from_millis(10)) => {}
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.env.draining.clone().cancelled_owned()
    }

    /// Whether the app has started to drain.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.env.draining.is_cancelled()
    }

    /// Which run of this handler on this message this is, from 1: the
    /// server's count of its deliveries, less those jetwire handed back
    /// unrun (pulled ahead, then given back at shutdown, on a consumer
    /// leader change or a reconnect). `classify` decides on this number,
    /// so a message gets `max_deliver` runs however often it is handed back.
    ///
    /// A delivery lost without a hand-back (to a process killed while it
    /// held the message unstarted) counts as a run, so the number can run
    /// ahead of the calls a handler saw; it never exceeds `max_deliver`, and
    /// a message is dead-lettered as `exhausted` only once its handler
    /// began its last run.
    pub fn attempt(&self) -> u32 {
        self.inner.meta.attempt()
    }

    /// The handler's `max_deliver`: on this attempt, a transient failure
    /// dead-letters the message.
    pub fn max_deliver(&self) -> u32 {
        self.inner.meta.max_deliver
    }

    /// The message's sequence in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.inner.meta.delivered().stream_sequence
    }

    /// The stream the message is stored in.
    pub fn stream(&self) -> &str {
        &self.inner.meta.stream
    }

    /// When the server stored the message.
    pub fn published_at(&self) -> SystemTime {
        self.inner.meta.delivered().published_at
    }

    /// The payload's version, as its publisher set it
    /// ([`PublishOptions::version`]); `None` when it did not.
    ///
    /// ```
    /// use jetwire::{queue, Context, HandlerError};
    ///
    /// #[queue("queue.prices")]
    /// async fn price(raw: serde_json::Value, ctx: Context) -> Result<(), HandlerError> {
    ///     match ctx.version() {
    ///         Some("2") => { /* cents */ }
    ///         _ => { /* the first version: euros as a float */ }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn version(&self) -> Option<&str> {
        self.inner
            .meta
            .headers
            .get(message::VERSION)
            .map(|v| v.as_str())
    }

    /// Acknowledges the message now, waiting for the server to confirm:
    /// it is never delivered again, and whatever the call does after this
    /// is logged and counted (`outcome="failed_after_ack"` for a failure),
    /// never retried or dead-lettered. For a handler that must not run a
    /// message twice once it has started its side effect. A second call
    /// does nothing; an ack the server does not confirm is a transient
    /// error, so the message is retried.
    ///
    /// ```
    /// use jetwire::{queue, Context, HandlerError};
    ///
    /// #[queue("queue.sms")]
    /// async fn send_sms(to: String, ctx: Context) -> Result<(), HandlerError> {
    ///     ctx.ack().await?; // from here on, at most once
    ///     tracing::info!(%to, "sending");
    ///     Ok(())
    /// }
    /// ```
    pub async fn ack(&self) -> Result<(), crate::error::HandlerError> {
        if self.inner.acked.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(acker) = self.acker() {
            acker.ack_confirmed().await.map_err(|e| {
                crate::error::HandlerError::transient(format!(
                    "could not acknowledge the message: {e}"
                ))
            })?;
        }
        self.inner.acked.store(true, Ordering::Release);
        Ok(())
    }

    /// Records that jetwire acknowledged the delivery before its call.
    pub(crate) fn acked_first(&self) {
        self.inner.acked.store(true, Ordering::Release);
    }

    /// Who acknowledged the delivery before its call ended, for a handler
    /// that acks `first` or not.
    pub(crate) fn acked_by(&self, first: bool) -> Acked {
        match (self.inner.acked.load(Ordering::Acquire), first) {
            (false, _) => Acked::No,
            (true, true) => Acked::First,
            (true, false) => Acked::ByHandler,
        }
    }

    /// The handler's fn name.
    pub fn handler(&self) -> &'static str {
        self.inner.meta.handler
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    pub(crate) fn env(&self) -> &Env {
        &self.inner.env
    }

    /// The number of the next chunk this call streams, from 0.
    pub(crate) fn next_chunk(&self) -> u32 {
        self.inner.streamed.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether this call streamed any output.
    pub(crate) fn streamed(&self) -> bool {
        self.inner.streamed.load(Ordering::Relaxed) > 0
    }

    /// How the delivery is answered; `None` in `TestApp`.
    pub(crate) fn acker(&self) -> Option<Acker<'_>> {
        Some(Acker {
            client: self.inner.env.acks.as_deref()?,
            reply: self.inner.meta.reply.as_ref()?,
        })
    }

    pub(crate) fn state<T: Clone + 'static>(&self) -> Option<T> {
        self.inner.env.states.get::<T>()
    }

    /// Publishes `payload` as JSON to `subject` and waits for JetStream to
    /// store it. The message carries this message's correlation id and
    /// trace context. Its default `Nats-Msg-Id` is derived from this
    /// message's id, the handler and the publish's order within the call,
    /// so a retried handler that publishes again is stored once (within
    /// the stream's duplicate window). Subjects under `dlq.` are refused
    /// with [`PublishError::InvalidSubject`]: dead letters are jetwire's to
    /// write.
    pub async fn publish<T: Encode + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
    ) -> Result<(), PublishError> {
        self.publish_with(subject, payload, PublishOptions::default())
            .await
    }

    /// [`Context::publish`] with options: message id, headers, correlation id.
    pub async fn publish_with<T: Encode + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Result<(), PublishError> {
        // Dead letters are jetwire's to write: a handler publishing one
        // would forge a failure.
        if subject.split('.').next() == Some(subject::DLQ_TOKEN) {
            return Err(PublishError::InvalidSubject(SubjectError::Reserved {
                subject: subject.to_owned(),
                token: subject::DLQ_TOKEN,
            }));
        }
        let meta = &self.inner.meta;
        let inherited = Inherited::from_inbound(&meta.headers, meta.message_id());
        let msg = message::build(subject, payload, options, &inherited, || {
            let n = self.inner.published.fetch_add(1, Ordering::Relaxed);
            let meta = &self.inner.meta;
            format!("{}:{}:{n}", meta.message_id(), meta.durable)
        })?;
        self.inner.env.outlet.publish(msg).await
    }

    /// Saves how far the handler got with this message, so a run after a
    /// crash, a timeout or a retry can resume there
    /// ([`Context::last_checkpoint`]). Each save replaces the last; the
    /// checkpoint is removed once the message is acked, dead-lettered or
    /// discarded. At most 128 KiB of JSON: progress, not data.
    ///
    /// ```
    /// use jetwire::{queue, Context, HandlerError};
    ///
    /// #[queue("queue.import")]
    /// async fn import(file: String, ctx: Context) -> Result<(), HandlerError> {
    ///     let start: u64 = ctx.last_checkpoint().await?.unwrap_or(0);
    ///     for chunk in start..100 {
    ///         // import chunk `chunk` of `file`
    ///         ctx.checkpoint(&(chunk + 1)).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn checkpoint<T: Serialize + ?Sized>(&self, progress: &T) -> Result<(), Error> {
        let value = serde_json::to_vec(progress)
            .map_err(|e| Error::Checkpoint(format!("does not encode as JSON: {e}")))?;
        if value.len() > MAX_CHECKPOINT {
            return Err(Error::Checkpoint(format!(
                "{} bytes is over the limit of {MAX_CHECKPOINT}: keep what the handler needs to resume (an offset, an id), not the data",
                value.len()
            )));
        }
        self.inner
            .env
            .checkpoints
            .save(self.checkpoint_key(), value.into())
            .await?;
        self.inner.checkpointed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The last checkpoint saved for this message by any run of this
    /// handler, in this process or one before it; `None` on a first run.
    pub async fn last_checkpoint<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        let Some(bytes) = self
            .inner
            .env
            .checkpoints
            .load(self.checkpoint_key())
            .await?
        else {
            return Ok(None);
        };
        self.inner.checkpointed.store(true, Ordering::Relaxed);
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Checkpoint(format!(
                "the saved checkpoint does not decode into this type: {e}"
            ))
        })
    }

    /// Waits until signal `name` is sent for this message
    /// ([`Publisher::signal`](crate::Publisher::signal) with this
    /// message's id), and returns its value. A signal sent before the wait
    /// began is found at once, and so is one a previous run received; every
    /// handler and app the message reaches gets the same signal (it is kept
    /// for a week, not removed when one of them settles). A signal sent
    /// more than 2 s before the message was published is an older
    /// message's with the same id, and is not this one's. While
    /// it waits, jetwire keeps telling the server the handler is working.
    /// If `timeout` passes first, the error (returned with `?`) is a
    /// transient failure: the message is retried with the handler's backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jetwire::{queue, Context, HandlerError};
    ///
    /// #[queue("queue.payout")]
    /// async fn payout(amount: u64, ctx: Context) -> Result<(), HandlerError> {
    ///     // Someone calls publisher.signal(<this message's id>, "approved", &"alice").
    ///     let approver: String = ctx.wait_for_signal("approved", Duration::from_secs(3600)).await?;
    ///     tracing::info!(amount, %approver, "paying out");
    ///     Ok(())
    /// }
    /// ```
    pub async fn wait_for_signal<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<T, Error> {
        let key = signals::key(self.message_id(), name);
        let published = self.published_at();
        let Some(bytes) = self.inner.env.signals.wait(key, published, timeout).await? else {
            return Err(Error::Signal(format!(
                "`{name}` for message `{}` did not come within {timeout:?}; the message is retried",
                self.message_id()
            )));
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Signal(format!(
                "`{name}` does not decode into the type awaited: {e}"
            ))
        })
    }

    /// Removes what this message kept, as its settlement says: its
    /// checkpoint if this run saved or found one ([`Kept::IfUsed`]), or
    /// whatever the run ([`Kept::Always`]: it leaves as a dead letter or
    /// discarded, maybe after runs of other processes that saved one).
    /// Signals stay: other handlers may wait for them.
    pub(crate) async fn clear_kept(&self, kept: Kept) {
        let used = || self.inner.checkpointed.load(Ordering::Relaxed);
        let clear = match kept {
            Kept::Stays => false,
            Kept::IfUsed => used(),
            Kept::Always => true,
        };
        if clear {
            self.inner
                .env
                .checkpoints
                .remove(self.checkpoint_key())
                .await;
        }
    }

    fn checkpoint_key(&self) -> String {
        let meta = &self.inner.meta;
        let delivered = meta.delivered();
        checkpoints::key(
            &meta.stream,
            &meta.durable,
            delivered.stream_sequence,
            delivered.published_at,
        )
    }

    /// Tells the server the handler is still working, pushing the ack
    /// deadline back by `ack_wait`. jetwire does this on its own while a
    /// call runs past half of `ack_wait`; call it by hand between long steps.
    pub async fn progress(&self) -> Result<(), Error> {
        match self.acker() {
            Some(acker) => acker
                .ack_with(AckKind::Progress)
                .await
                .map_err(|source| Error::nats("sending progress", source)),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.inner.meta;
        f.debug_struct("Context")
            .field("handler", &m.handler)
            .field("subject", &m.subject())
            .field("message_id", &m.message_id())
            .field("attempt", &m.attempt())
            .field("max_deliver", &m.max_deliver)
            .field("stream", &m.stream)
            .field("stream_sequence", &m.delivered().stream_sequence)
            .finish_non_exhaustive()
    }
}
