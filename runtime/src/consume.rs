//! The pull loop of one handler: pull as many messages as there are free
//! call slots, run each call (with automatic progress), then carry out what
//! [`classify`] decides: ack, nak with delay, or dead-letter then term.
//!
//! Memory is bounded by `concurrency`: a pull never asks for more messages
//! than there are free slots, so no backlog is buffered in the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, AckKind};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use jetwire_grammar::subject;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::classify::{Action, classify};
use crate::context::{Context, Meta, Progress, States};
use crate::dlq;
use crate::invoke::invoke;
use crate::publish::{self, JetStreamOutlet, Outlet};
use crate::registry::Kind;
use crate::topology::{self, Binding};

/// The fewest and most messages one pull asks for.
const MIN_BATCH: usize = 8;
const MAX_BATCH: usize = 1024;
/// The most bytes one pull asks for, so large payloads pull fewer at a time.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// How long a pull waits at the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How often an idle pull hears from the server; two missed ones are reported.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How often an event loop notes its durable's ack floor, to restart from
/// there should the durable be deleted under it.
const RESUME_POINT_EVERY: Duration = Duration::from_secs(1);
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
    pub(crate) client: async_nats::Client,
    /// For an event durable: the stream sequence to start from if it must be
    /// recreated (its last known ack floor + 1); 0 until known.
    pub(crate) resume_from: AtomicU64,
    /// The binding's stream and durable names, shared by every delivery.
    pub(crate) stream: Arc<str>,
    pub(crate) durable: Arc<str>,
    pub(crate) js: jetstream::Context,
    pub(crate) outlet: JetStreamOutlet,
    /// `outlet` as handlers' contexts take it, allocated once.
    pub(crate) shared_outlet: Arc<dyn Outlet>,
    pub(crate) states: Arc<States>,
    pub(crate) prefix: Option<String>,
    pub(crate) counters: Arc<Counters>,
}

/// Runs until `stop` fires, then waits for its in-flight calls. Calls still
/// running when `abort` fires are interrupted and their messages nak'ed.
///
/// Messages come from one pipelined pull stream (a persistent inbox; the
/// next pull is asked for while the last is being worked). Each message
/// becomes a task at once; the task waits for one of `concurrency` call
/// slots, sending progress from the moment of delivery, so a message that
/// waits is never redelivered for waiting. At most `concurrency + batch`
/// messages are in tasks, and the stream holds at most about one more batch
/// pulled ahead: [`held_at_most`] in all.
pub(crate) async fn run(
    worker: Arc<Worker>,
    mut consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let concurrency = worker.binding.def.concurrency() as usize;
    let batch = pull_batch(concurrency);
    let held = Arc::new(Semaphore::new(concurrency + batch));
    let slots = Arc::new(Semaphore::new(concurrency));
    let in_flight = TaskTracker::new();
    let mut pause = FIRST_RETRY_PAUSE;
    let is_event = worker.binding.def.kind == Kind::Subscribe;
    let mut resume_point = tokio::time::interval(RESUME_POINT_EVERY);
    let mut noted_at = u64::MAX;
    let mut leader_changes = leader_elections(&worker).await;

    'pull: loop {
        let stream = consumer
            .stream()
            .max_messages_per_batch(batch)
            .max_bytes_per_batch(MAX_BATCH_BYTES)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages();
        let mut messages = tokio::select! {
            biased;
            _ = stop.cancelled() => break 'pull,
            m = stream => match m {
                Ok(m) => m,
                Err(e) => {
                    recover(&worker, &mut consumer, &stop, &mut pause, &e.to_string()).await;
                    continue 'pull;
                }
            },
        };
        loop {
            let hold = match held.clone().try_acquire_owned() {
                Ok(h) => h,
                Err(_) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => break 'pull,
                    hold = held.clone().acquire_owned() => match hold {
                        Ok(h) => h,
                        Err(_) => break 'pull,
                    },
                },
            };
            let next = loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {
                        // Hand back what already arrived, so a live replica gets it now.
                        while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
                            let _ = msg.ack_with(AckKind::Nak(None)).await;
                        }
                        break 'pull;
                    }
                    next = messages.next() => break next,
                    Some(_) = leader_changes.next() => {
                        // A pull waiting at the old leader is gone with it:
                        // hand back what arrived and pull from the new one.
                        tracing::info!(handler = worker.binding.def.name, "consumer leader changed; pulling from the new leader");
                        while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
                            let _ = msg.ack_with(AckKind::Nak(None)).await;
                        }
                        continue 'pull;
                    }
                    _ = resume_point.tick(), if is_event => {
                        // Where to restart if an operator deletes the durable;
                        // asked only while messages flow.
                        let received = worker.counters.received.load(Ordering::Relaxed);
                        if received != noted_at {
                            noted_at = received;
                            if let Ok(info) = consumer.info().await {
                                worker.resume_from.store(info.ack_floor.stream_sequence + 1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            };
            match next {
                Some(Ok(msg)) => {
                    pause = FIRST_RETRY_PAUSE;
                    worker.counters.received.fetch_add(1, Ordering::Relaxed);
                    let lanes = Lanes {
                        hold,
                        slots: slots.clone(),
                        stop: stop.clone(),
                        abort: abort.clone(),
                    };
                    in_flight.spawn(handle(worker.clone(), msg, lanes));
                }
                Some(Err(e)) if e.kind() == MessagesErrorKind::MissingHeartbeat => {
                    // Not fatal: the stream asks again by itself.
                    tracing::debug!(handler = worker.binding.def.name, "missed a pull heartbeat");
                }
                Some(Err(e)) => {
                    recover(&worker, &mut consumer, &stop, &mut pause, &e.to_string()).await;
                    continue 'pull;
                }
                None => {
                    recover(
                        &worker,
                        &mut consumer,
                        &stop,
                        &mut pause,
                        "pull stream ended",
                    )
                    .await;
                    continue 'pull;
                }
            }
        }
    }
    in_flight.close();
    in_flight.wait().await;
}

/// The most messages one process holds for a handler: running, waiting
/// for a slot, and pulled but not yet taken from the stream.
pub(crate) fn held_at_most(concurrency: usize) -> usize {
    concurrency + pull_batch(concurrency) * 2
}

/// What a delivery task needs from its loop: its place among the held
/// messages, the call slots, and the shutdown signals.
struct Lanes {
    hold: OwnedSemaphorePermit,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    abort: CancellationToken,
}

/// Messages asked for per pull: `8 x concurrency`, within
/// [`MIN_BATCH`]..=[`MAX_BATCH`]. Each pull costs the server a request, so
/// small pulls cost more than the handlers; the held messages wait in
/// tasks that keep them alive with progress.
pub(crate) fn pull_batch(concurrency: usize) -> usize {
    (concurrency * 16).clamp(MIN_BATCH, MAX_BATCH)
}

/// The consumer's leader-elected advisories (clustered servers), or
/// nothing if they cannot be subscribed to.
async fn leader_elections(
    worker: &Worker,
) -> futures_util::stream::BoxStream<'static, async_nats::Message> {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{}.{}",
        worker.binding.stream, worker.binding.durable
    );
    match worker.client.subscribe(subject).await {
        Ok(sub) => sub.boxed(),
        Err(e) => {
            tracing::debug!(error = %e, "no leader-election advisories; missed heartbeats still recover");
            futures_util::stream::pending().boxed()
        }
    }
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
    let resume = match worker.resume_from.load(Ordering::Relaxed) {
        0 => None,
        seq => Some(seq),
    };
    match topology::ensure_consumer_resuming(&worker.js, b, resume).await {
        Ok(c) => *consumer = c,
        Err(e) => {
            tracing::warn!(handler = b.def.name, error = %e, "cannot restore the durable yet")
        }
    }
}

/// Extends the ack deadline of one delivery.
struct Deadline(Arc<Acker>);

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

/// One delivery, start to finish. Holds its place until the message is settled.
async fn handle(worker: Arc<Worker>, msg: jetstream::Message, lanes: Lanes) {
    let def = worker.binding.def;
    let (sequence, attempt, published_at) = match msg.info() {
        Ok(i) => (
            i.stream_sequence,
            i.delivered.max(1) as u32,
            SystemTime::from(i.published),
        ),
        Err(e) => {
            tracing::error!(handler = def.name, error = %e, "delivery without JetStream metadata; leaving it to ack_wait");
            return;
        }
    };
    let (message, acker) = msg.split();
    let acker = Arc::new(acker);
    let headers = message.headers.unwrap_or_default();
    let full_subject = message.subject.as_str();
    let subject = subject::strip_prefix(worker.prefix.as_deref(), full_subject)
        .unwrap_or(full_subject)
        .to_owned();
    let stream = worker.stream.clone();
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
        durable: worker.durable.clone(),
        subject,
        headers,
        message_id,
        attempt,
        max_deliver: def.max_deliver(),
        stream,
        stream_sequence: sequence,
        published_at,
    };
    settle(worker, acker, message.payload, meta, lanes)
        .instrument(span)
        .await
}

async fn settle(
    worker: Arc<Worker>,
    acker: Arc<Acker>,
    payload: bytes::Bytes,
    meta: Meta,
    lanes: Lanes,
) {
    let def = worker.binding.def;
    let counters = &worker.counters;
    let progress: Arc<dyn Progress> = Arc::new(Deadline(acker.clone()));
    let attempt = meta.attempt;
    let ctx = Context::new(
        meta,
        worker.states.clone(),
        worker.shared_outlet.clone(),
        Some(progress),
    );

    // Keep the delivery alive, from now on, while it waits for a slot and
    // while the call runs: progress every half ack_wait.
    // Keep the delivery alive while it waits for a slot and while the call
    // runs: progress every half ack_wait. The timer is made only when it
    // may be needed: a free slot and a call done at its first poll need none.
    let beat = (def.ack_wait() / 2).max(Duration::from_millis(50));
    let started = tokio::time::Instant::now();
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut progress_ticker = || tokio::time::interval_at(started + beat, beat);
    let _slot = match lanes.slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            let t = ticker.insert(progress_ticker());
            loop {
                tokio::select! {
                    biased;
                    _ = lanes.stop.cancelled() => {
                        // Never started: hand it back for a live replica.
                        let _ = acker.ack_with(AckKind::Nak(None)).await;
                        return;
                    }
                    slot = lanes.slots.clone().acquire_owned() => match slot {
                        Ok(s) => break s,
                        Err(_) => return,
                    },
                    _ = t.tick() => send_progress(&acker).await,
                }
            }
        }
    };
    let _hold = lanes.hold;
    let call = invoke(def, payload.clone(), ctx.clone());
    tokio::pin!(call);
    let called = match (&mut call).now_or_never() {
        Some(called) => called,
        None => {
            let t = ticker.get_or_insert_with(&mut progress_ticker);
            loop {
                tokio::select! {
                    called = &mut call => break called,
                    _ = t.tick() => send_progress(&acker).await,
                    _ = lanes.abort.cancelled() => {
                        counters.interrupted.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(handler = def.name, "shutdown timeout: call interrupted, message handed back");
                        let _ = acker.ack_with(AckKind::Nak(None)).await;
                        return;
                    }
                }
            }
        }
    };

    let action = classify(&called.outcome, attempt, &def.policy());
    let error = called.error.as_deref().unwrap_or_default();
    let handler = def.name;
    let meta = ctx.meta();
    let (subject, stream, sequence) = (&meta.subject, &meta.stream, meta.stream_sequence);
    match action {
        Action::Ack => {
            counters.acked.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("acked");
            if let Err(e) = acker.ack().await {
                tracing::warn!(error = %e, "could not send ack; the message will be redelivered");
            }
        }
        Action::Nak { delay } => {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, outcome = ?called.outcome, ?delay, error, "failed; will retry");
            nak(&acker, delay).await;
        }
        Action::DeadLetter(reason) => {
            let letter = dlq::letter(dlq::Failed {
                subject,
                headers: &meta.headers,
                payload,
                reason,
                error,
                handler,
                durable: &worker.durable,
                attempts: attempt,
                stream,
                sequence,
                failed_at: SystemTime::now(),
            });
            match worker.outlet.send_acked(letter).await {
                Ok(_) => {
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, %reason, error, "dead-lettered");
                    if let Err(e) = acker.ack_with(AckKind::Term).await {
                        tracing::warn!(error = %e, "could not terminate a dead-lettered message; the copy is stored and a redelivery is deduplicated");
                    }
                }
                Err(e) => {
                    // Not stored: keep the original. On the last attempt the
                    // server's max-deliveries advisory moves it later.
                    tracing::error!(handler = %handler, %subject, %stream, sequence, %reason, error = %e, "could not store the dead letter; handing the message back");
                    nak(&acker, def.policy().delay(attempt)).await;
                }
            }
        }
    }
}

async fn send_progress(acker: &Acker) {
    if let Err(e) = acker.ack_with(AckKind::Progress).await {
        tracing::warn!(error = %e, "could not send progress");
    }
}

async fn nak(acker: &Acker, delay: Duration) {
    let kind = if delay.is_zero() {
        AckKind::Nak(None)
    } else {
        AckKind::Nak(Some(delay))
    };
    if let Err(e) = acker.ack_with(kind).await {
        tracing::warn!(error = %e, "could not send nak; the message is redelivered after ack_wait");
    }
}
