//! The pull loop of one handler: pull as many messages as there are free
//! call slots, run each call (with automatic progress), then carry out what
//! [`classify`] decides: ack, nak with delay, or dead-letter then term.
//!
//! Memory is bounded by `concurrency`: a pull never asks for more messages
//! than there are free slots, so no backlog is buffered in the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use jetwire_grammar::subject;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::classify::{Action, classify};
use crate::context::{Context, Meta, Progress, States};
use crate::dlq;
use crate::invoke::invoke;
use crate::publish::{self, JetStreamOutlet, Outlet};
use crate::topology::{self, Binding};

/// The most messages one pull asks for.
const MAX_BATCH: usize = 256;
/// How long a pull waits at the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Pause after a failed pull, doubling up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Counters of one handler's outcomes in this process.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) interrupted: AtomicU64,
}

/// What one handler's loop needs.
pub(crate) struct Worker {
    pub(crate) binding: Binding,
    pub(crate) js: jetstream::Context,
    pub(crate) outlet: JetStreamOutlet,
    pub(crate) states: Arc<States>,
    pub(crate) prefix: Option<String>,
    pub(crate) counters: Arc<Counters>,
}

/// Runs until `stop` fires, then waits for its in-flight calls. Calls still
/// running when `abort` fires are interrupted and their messages nak'ed.
pub(crate) async fn run(
    worker: Arc<Worker>,
    mut consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let concurrency = worker.binding.def.concurrency() as usize;
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    let mut pause = FIRST_RETRY_PAUSE;

    'pull: loop {
        while in_flight.try_join_next().is_some() {}
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break 'pull,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break 'pull,
            },
        };
        let want = (slots.available_permits() + 1).min(MAX_BATCH);
        let batch = consumer
            .batch()
            .max_messages(want)
            .expires(PULL_EXPIRES)
            .messages();
        let mut batch = tokio::select! {
            biased;
            _ = stop.cancelled() => break 'pull,
            b = batch => match b {
                Ok(b) => b,
                Err(e) => {
                    drop(first);
                    recover(&worker, &mut consumer, &stop, &mut pause, &e.to_string()).await;
                    continue 'pull;
                }
            },
        };
        let mut first = Some(first);
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    // Hand back what already arrived, so a live replica gets it now.
                    while let Some(Some(Ok(msg))) = batch.next().now_or_never() {
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                    }
                    break 'pull;
                }
                next = batch.next() => next,
            };
            match next {
                None => break,
                Some(Ok(msg)) => {
                    pause = FIRST_RETRY_PAUSE;
                    let permit = match first.take() {
                        Some(p) => p,
                        // A pull asks for no more than the free slots, and
                        // only this loop takes slots, so one is free.
                        None => match slots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => break 'pull,
                        },
                    };
                    worker.counters.received.fetch_add(1, Ordering::Relaxed);
                    in_flight.spawn(handle(worker.clone(), msg, permit, abort.clone()));
                }
                Some(Err(e)) => {
                    recover(&worker, &mut consumer, &stop, &mut pause, &e.to_string()).await;
                    continue 'pull;
                }
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// After a failed pull: wait (cancellably), then make sure the durable
/// exists again; an operator may have deleted it.
async fn recover(
    worker: &Worker,
    consumer: &mut jetstream::consumer::PullConsumer,
    stop: &CancellationToken,
    pause: &mut Duration,
    error: &str,
) {
    let b = &worker.binding;
    tracing::warn!(handler = b.def.name, durable = %b.durable, error, "pull failed; retrying");
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(*pause) => {}
    }
    *pause = (*pause * 2).min(MAX_RETRY_PAUSE);
    match topology::ensure_consumer(&worker.js, b).await {
        Ok(c) => *consumer = c,
        Err(e) => {
            tracing::warn!(handler = b.def.name, error = %e, "cannot restore the durable yet")
        }
    }
}

/// Extends the ack deadline of one delivery.
struct Deadline(Arc<jetstream::Message>);

impl Progress for Deadline {
    fn progress(&self) -> BoxFuture<'_, Result<(), crate::Error>> {
        Box::pin(async move {
            self.0
                .ack_with(AckKind::Progress)
                .await
                .map_err(|source| crate::Error::Nats {
                    context: "sending progress".to_owned(),
                    source,
                })
        })
    }
}

/// One delivery, start to finish. Holds its slot until the message is settled.
async fn handle(
    worker: Arc<Worker>,
    msg: jetstream::Message,
    _slot: OwnedSemaphorePermit,
    abort: CancellationToken,
) {
    let def = worker.binding.def;
    let (stream, sequence, attempt, published_at) = match msg.info() {
        Ok(i) => (
            i.stream.to_owned(),
            i.stream_sequence,
            i.delivered.max(1) as u32,
            SystemTime::from(i.published),
        ),
        Err(e) => {
            tracing::error!(handler = def.name, error = %e, "delivery without JetStream metadata; leaving it to ack_wait");
            return;
        }
    };
    let msg = Arc::new(msg);
    let headers = msg.message.headers.clone().unwrap_or_default();
    let full_subject = msg.message.subject.as_str();
    let subject = subject::strip_prefix(worker.prefix.as_deref(), full_subject)
        .unwrap_or(full_subject)
        .to_owned();
    let message_id = headers
        .get(publish::MSG_ID)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| format!("{stream}:{sequence}"));
    let span = tracing::info_span!(
        "jetwire.handle",
        handler = def.name,
        subject = %subject,
        stream = %stream,
        sequence,
        attempt,
        message_id = %message_id,
    );
    let meta = Meta {
        handler: def.name,
        durable: worker.binding.durable.clone(),
        subject,
        headers,
        message_id,
        attempt,
        max_deliver: def.max_deliver(),
        stream,
        stream_sequence: sequence,
        published_at,
    };
    settle(worker, msg, meta, abort).instrument(span).await
}

async fn settle(
    worker: Arc<Worker>,
    msg: Arc<jetstream::Message>,
    meta: Meta,
    abort: CancellationToken,
) {
    let def = worker.binding.def;
    let counters = &worker.counters;
    let outlet: Arc<dyn Outlet> = Arc::new(worker.outlet.clone());
    let progress: Arc<dyn Progress> = Arc::new(Deadline(msg.clone()));
    let attempt = meta.attempt;
    let headers = meta.headers.clone();
    let (subject, stream, sequence) = (
        meta.subject.clone(),
        meta.stream.clone(),
        meta.stream_sequence,
    );
    let ctx = Context::new(meta, worker.states.clone(), outlet, Some(progress));

    // Keep the delivery alive while the call runs past half of ack_wait.
    let beat = (def.ack_wait() / 2).max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    let call = invoke(def, msg.message.payload.clone(), ctx);
    tokio::pin!(call);
    let called = loop {
        tokio::select! {
            called = &mut call => break called,
            _ = ticker.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %e, "could not send progress");
                }
            }
            _ = abort.cancelled() => {
                counters.interrupted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(handler = def.name, sequence, "shutdown timeout: call interrupted, message handed back");
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                return;
            }
        }
    };

    let action = classify(&called.outcome, attempt, &def.policy());
    let error = called.error.as_deref().unwrap_or_default();
    let handler = def.name;
    match action {
        Action::Ack => {
            counters.acked.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("acked");
            if let Err(e) = msg.ack().await {
                tracing::warn!(error = %e, "could not send ack; the message will be redelivered");
            }
        }
        Action::Nak { delay } => {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, outcome = ?called.outcome, ?delay, error, "failed; will retry");
            nak(&msg, delay).await;
        }
        Action::DeadLetter(reason) => {
            let letter = dlq::letter(dlq::Failed {
                subject: &subject,
                headers: &headers,
                payload: msg.message.payload.clone(),
                reason,
                error,
                handler: def.name,
                durable: &worker.binding.durable,
                attempts: attempt,
                stream: &stream,
                sequence,
                failed_at: SystemTime::now(),
            });
            match worker.outlet.send_acked(letter).await {
                Ok(_) => {
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, %reason, error, "dead-lettered");
                    if let Err(e) = msg.ack_with(AckKind::Term).await {
                        tracing::warn!(error = %e, "could not terminate a dead-lettered message; the copy is stored and a redelivery is deduplicated");
                    }
                }
                Err(e) => {
                    // Not stored: keep the original. On the last attempt the
                    // server's max-deliveries advisory moves it later.
                    tracing::error!(handler = %handler, %subject, %stream, sequence, %reason, error = %e, "could not store the dead letter; handing the message back");
                    nak(&msg, def.policy().delay(attempt)).await;
                }
            }
        }
    }
}

async fn nak(msg: &jetstream::Message, delay: Duration) {
    let kind = if delay.is_zero() {
        AckKind::Nak(None)
    } else {
        AckKind::Nak(Some(delay))
    };
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!(error = %e, "could not send nak; the message is redelivered after ack_wait");
    }
}
