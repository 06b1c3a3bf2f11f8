//! Dead letters for deliveries that never answered.
//!
//! When a process dies (or hangs past `ack_wait`) during a message's last
//! delivery, no handler is left to dead-letter it. The server then emits a
//! max-deliveries advisory, a core-NATS message lost if nobody listens. So
//! jetwire captures the advisories of its streams in a stream of its own,
//! `JETWIRE_ADVISORIES`, read by one durable shared by every app of the
//! deployment: the advisory waits there while no replica runs. For each,
//! the original is read by stream sequence and dead-lettered with reason
//! `exhausted` under the same `Nats-Msg-Id` the live path would use (so a
//! duplicate advisory, or a race with a live replica, stores it once); a
//! work-queue original is then deleted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt;
use jetwire_grammar::subject;
use tokio_util::sync::CancellationToken;

use crate::classify::DlqReason;
use crate::config::{Config, Provision};
use crate::dlq::letter::{self, Failed};
use crate::dlq::stream as dlq_stream;
use crate::dlq::trust::{self, Claim};
use crate::error::Error;
use crate::names;
use crate::observe::metrics;
use crate::policy::RetryPause;
use crate::protocol::stream::create_or_open;
use crate::publish::outlet::JetStreamOutlet;

/// Makes sure the advisory stream captures the advisories of `streams`,
/// adding subjects (never removing another app's), and returns its durable.
pub(crate) async fn ensure(
    js: &jetstream::Context,
    config: &Config,
    streams: &[String],
) -> Result<jetstream::consumer::PullConsumer, Error> {
    let name = names::advisory_stream(config.prefix());
    let durable = names::advisory_durable(config.prefix());
    let want: Vec<String> = streams
        .iter()
        .map(|s| names::max_deliveries_of(s))
        .collect();
    let stream_err = |reason: String| Error::Stream {
        stream: name.clone(),
        reason,
    };
    if config.provision == Provision::Bind {
        return bind(js, &name, &durable, &want).await.map_err(stream_err);
    }
    // Several apps may add their subjects at once: re-read until ours stick.
    for _ in 0..10 {
        let stream = create_or_open(
            js,
            stream::Config {
                name: name.clone(),
                subjects: want.clone(),
                retention: stream::RetentionPolicy::WorkQueue,
                num_replicas: config.replicas(),
                storage: config.storage(),
                description: Some(
                    "jetwire: max-deliveries advisories awaiting dead-lettering".into(),
                ),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| stream_err(format!("cannot create the advisory stream: {e}")))?;
        let have = stream.cached_info().config.clone();
        let missing: Vec<&String> = want.iter().filter(|w| !have.subjects.contains(w)).collect();
        if missing.is_empty() {
            let consumer = stream
                .get_or_create_consumer(
                    &durable,
                    pull::Config {
                        durable_name: Some(durable.clone()),
                        description: Some(
                            "jetwire: moves never-answered last deliveries to the DLQ".into(),
                        ),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(30),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| stream_err(format!("cannot create its durable: {e}")))?;
            return Ok(consumer);
        }
        let mut updated = have;
        updated.subjects.extend(missing.into_iter().cloned());
        if let Err(e) = js.update_stream(updated).await {
            tracing::debug!(error = %e, "advisory stream update raced; retrying");
        }
    }
    Err(stream_err(
        "could not add this app's subjects after 10 tries; is another app rewriting it?".into(),
    ))
}

/// Under `JETWIRE_PROVISION=bind`: the advisory stream and durable as they
/// are; a stream that lacks this app's subjects is an error, not updated.
async fn bind(
    js: &jetstream::Context,
    name: &str,
    durable: &str,
    want: &[String],
) -> Result<jetstream::consumer::PullConsumer, String> {
    let stream = js
        .get_stream(name)
        .await
        .map_err(|e| format!("JETWIRE_PROVISION=bind, and it cannot be read: {e}"))?;
    let have = &stream.cached_info().config.subjects;
    let lacking: Vec<&String> = want.iter().filter(|w| !have.contains(w)).collect();
    if !lacking.is_empty() {
        return Err(format!(
            "JETWIRE_PROVISION=bind, and it does not capture {lacking:?}: add them"
        ));
    }
    stream.get_consumer(durable).await.map_err(|e| {
        format!("JETWIRE_PROVISION=bind, and its durable `{durable}` cannot be read: {e}")
    })
}

/// What the capture of max-deliveries advisories works with: the server,
/// where letters go, the app's config, and the streams whose advisories it
/// captures.
pub(crate) struct Capture {
    pub(crate) js: jetstream::Context,
    pub(crate) outlet: JetStreamOutlet,
    pub(crate) config: Arc<Config>,
    pub(crate) streams: Vec<String>,
}

impl Capture {
    /// The advisory stream and its durable, made (again) if need be.
    pub(crate) async fn ensure(&self) -> Result<jetstream::consumer::PullConsumer, Error> {
        ensure(&self.js, &self.config, &self.streams).await
    }
}

/// Reads advisories until `stop` fires. After a failed read the stream and
/// durable are made again, since an operator may have deleted them.
pub(crate) async fn run(
    capture: Capture,
    mut consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
) {
    let mut pause = RetryPause::new();
    while !stop.is_cancelled() {
        let Some(error) = read_batch(&capture, &consumer, &stop, &mut pause).await else {
            continue;
        };
        tracing::warn!(error, "reading advisories failed; retrying");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause.after_failure()) => {}
        }
        match capture.ensure().await {
            Ok(again) => consumer = again,
            Err(e) => tracing::warn!(error = %e, "cannot make the advisory capture again yet"),
        }
    }
}

/// Reads one batch of advisories and acts on each; why it failed, if it
/// did. Shutdown stops it between advisories, never inside one.
async fn read_batch(
    capture: &Capture,
    consumer: &jetstream::consumer::PullConsumer,
    stop: &CancellationToken,
    pause: &mut RetryPause,
) -> Option<String> {
    let batch = consumer
        .batch()
        .max_messages(16)
        .expires(Duration::from_secs(5))
        .messages()
        .await;
    let mut batch = match batch {
        Ok(batch) => batch,
        Err(e) => return Some(e.to_string()),
    };
    pause.reset();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return None,
            next = batch.next() => next?,
        };
        let msg = match next {
            Ok(msg) => msg,
            Err(e) => return Some(e.to_string()),
        };
        let kind = match trust::read(&msg.subject, &msg.payload) {
            Ok(claim) => match capture.dead_letter(&claim).await {
                Ok(()) => AckKind::Ack,
                Err(e) => {
                    tracing::error!(stream = %claim.stream, sequence = claim.stream_seq, error = %e, "could not dead-letter after max deliveries; retrying");
                    AckKind::Nak(Some(Duration::from_secs(1)))
                }
            },
            Err(refused) => {
                tracing::warn!(%refused, "advisory refused; dropping it");
                AckKind::Term
            }
        };
        let _ = msg.ack_with(kind).await;
    }
}

impl Capture {
    /// Dead-letters the message `claim` names, once its durable is known
    /// to be one of this deployment's and to have given up on it.
    async fn dead_letter(&self, claim: &Claim) -> Result<(), Error> {
        let (js, prefix) = (&self.js, self.config.prefix());
        let nats = |doing: &str| format!("{doing} {}#{}", claim.stream, claim.stream_seq);
        let stream = js
            .get_stream(&claim.stream)
            .await
            .map_err(|e| Error::nats(nats("opening"), e))?;
        let Some(handler) = jetwire_handler(&stream, prefix, claim).await else {
            return Ok(());
        };
        let original = match stream.get_raw_message(claim.stream_seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                tracing::debug!(stream = %claim.stream, sequence = claim.stream_seq, "already gone; nothing to dead-letter");
                return Ok(());
            }
            Err(e) => return Err(Error::nats(nats("reading"), e)),
        };
        let full = original.subject.as_str();
        let subject = subject::strip_prefix(prefix, full).unwrap_or(full);
        let letter = letter::letter(Failed {
            subject,
            headers: &original.headers,
            payload: original.payload.clone(),
            reason: DlqReason::Exhausted,
            error: letter::NEVER_ANSWERED,
            handler: &handler,
            durable: &claim.durable,
            attempts: u32::try_from(claim.deliveries).unwrap_or(u32::MAX),
            stream: &claim.stream,
            sequence: claim.stream_seq,
            published_at: SystemTime::from(original.time),
            failed_at: self.config.clock().now(),
        });
        dlq_stream::store(js, &self.outlet, &self.config, letter).await?;
        // What its runs kept goes with it, as on the live path.
        let checkpoints =
            crate::protocol::checkpoints::Bucket::new(js.clone(), self.config.prefix(), None);
        let key = crate::protocol::checkpoints::key(
            &claim.stream,
            &claim.durable,
            claim.stream_seq,
            SystemTime::from(original.time),
        );
        crate::protocol::checkpoints::Checkpoints::remove(&checkpoints, key).await;
        metrics::dead_letter(&handler, DlqReason::Exhausted.as_str());
        tracing::warn!(handler = %handler, stream = %claim.stream, sequence = claim.stream_seq, durable = %claim.durable, "dead-lettered after max deliveries without an answer");
        let info = stream.cached_info();
        if info.config.retention == stream::RetentionPolicy::WorkQueue
            && let Err(e) = stream.delete_message(claim.stream_seq).await
        {
            tracing::debug!(error = %e, "original already removed");
        }
        Ok(())
    }
}

/// The fn name of the handler whose durable `claim` names, if that durable
/// is one of this deployment's (its metadata names its owner,
/// `names::Owner`) and has given up on the message;
/// `None`, logged, for another service's consumer or a claim that does
/// not add up.
async fn jetwire_handler(
    stream: &jetstream::stream::Stream,
    prefix: Option<&str>,
    claim: &Claim,
) -> Option<String> {
    let info = match stream.consumer_info(&claim.durable).await {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(stream = %claim.stream, durable = %claim.durable, error = %e, "advisory for a durable that cannot be read; leaving the message to it");
            return None;
        }
    };
    let Some(owner) = trust::jetwire_owner(prefix, &claim.durable, &info.config.metadata) else {
        tracing::warn!(stream = %claim.stream, durable = %claim.durable, "advisory for a durable jetwire does not own; ignoring it");
        return None;
    };
    let max_deliver = u64::try_from(info.config.max_deliver).unwrap_or(0);
    if max_deliver > 0 && claim.deliveries < max_deliver {
        tracing::warn!(stream = %claim.stream, durable = %claim.durable, deliveries = claim.deliveries, max_deliver, "advisory claims fewer deliveries than the durable allows; ignoring it");
        return None;
    }
    Some(owner.fn_name().to_owned())
}
