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

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt;
use jetwire_grammar::subject;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::classify::DlqReason;
use crate::config::Config;
use crate::dlq::letter::{self, Failed};
use crate::error::Error;
use crate::names;
use crate::policy::RetryPause;
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
    // Several apps may add their subjects at once: re-read until ours stick.
    for _ in 0..10 {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: want.clone(),
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: config.stream_replicas,
                max_age: Duration::from_secs(7 * 24 * 3600),
                description: Some(
                    "jetwire: max-deliveries advisories awaiting dead-lettering".into(),
                ),
                ..Default::default()
            })
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

#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Reads advisories until `stop` fires.
pub(crate) async fn run(
    js: jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
    outlet: JetStreamOutlet,
    prefix: Option<String>,
    stop: CancellationToken,
) {
    let mut pause = RetryPause::new();
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            b = consumer.batch().max_messages(16).expires(Duration::from_secs(5)).messages() => b,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "advisory pull failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause.next()) => {}
                }
                continue;
            }
        };
        pause.reset();
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = batch.next() => n,
            };
            let Some(Ok(msg)) = next else { break };
            let kind = match serde_json::from_slice::<MaxDeliveries>(&msg.payload) {
                Ok(adv) => match dead_letter(&js, &outlet, prefix.as_deref(), &adv).await {
                    Ok(()) => AckKind::Ack,
                    Err(e) => {
                        tracing::error!(stream = %adv.stream, sequence = adv.stream_seq, error = %e, "could not dead-letter after max deliveries; retrying");
                        AckKind::Nak(Some(Duration::from_secs(1)))
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable advisory; dropping it");
                    AckKind::Term
                }
            };
            let _ = msg.ack_with(kind).await;
        }
    }
}

async fn dead_letter(
    js: &jetstream::Context,
    outlet: &JetStreamOutlet,
    prefix: Option<&str>,
    adv: &MaxDeliveries,
) -> Result<(), Error> {
    let nats = |doing: &str| format!("{doing} {}#{}", adv.stream, adv.stream_seq);
    let stream = js
        .get_stream(&adv.stream)
        .await
        .map_err(|e| Error::nats(nats("opening"), e))?;
    let original = match stream.get_raw_message(adv.stream_seq).await {
        Ok(m) => m,
        Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            tracing::debug!(stream = %adv.stream, sequence = adv.stream_seq, "already gone; nothing to dead-letter");
            return Ok(());
        }
        Err(e) => return Err(Error::nats(nats("reading"), e)),
    };
    // The handler's fn name is in the durable's description; fall back to the durable.
    let handler = match stream.consumer_info(&adv.consumer).await {
        Ok(info) => info
            .config
            .description
            .as_deref()
            .and_then(|d| d.strip_prefix("jetwire: "))
            .and_then(|d| d.split(' ').next())
            .and_then(|path| path.rsplit("::").next())
            .map(str::to_owned),
        Err(_) => None,
    }
    .unwrap_or_else(|| adv.consumer.clone());
    let full = original.subject.as_str();
    let subject = subject::strip_prefix(prefix, full).unwrap_or(full);
    let letter = letter::letter(Failed {
        subject,
        headers: &original.headers,
        payload: original.payload.clone(),
        reason: DlqReason::Exhausted,
        error: "the last delivery never answered: the process died or hung past ack_wait",
        handler: &handler,
        durable: &adv.consumer,
        attempts: u32::try_from(adv.deliveries).unwrap_or(u32::MAX),
        stream: &adv.stream,
        sequence: adv.stream_seq,
        failed_at: SystemTime::now(),
    });
    outlet.send_confirmed(letter).await?;
    tracing::warn!(stream = %adv.stream, sequence = adv.stream_seq, consumer = %adv.consumer, "dead-lettered after max deliveries without an answer");
    let info = stream.cached_info();
    if info.config.retention == stream::RetentionPolicy::WorkQueue
        && let Err(e) = stream.delete_message(adv.stream_seq).await
    {
        tracing::debug!(error = %e, "original already removed");
    }
    Ok(())
}
