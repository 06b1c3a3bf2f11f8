//! The pull loop of one handler: pull ahead in batches, run each call
//! (with automatic progress), then carry out what [`classify`] decides:
//! ack, nak with delay, or dead-letter then term.
//!
//! Memory is bounded by `concurrency`: a process holds at most
//! [`held_at_most`] messages of a handler, however long the backlog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind};
use futures_util::{FutureExt, StreamExt};
use jetwire_grammar::subject;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::classify::{Action, Outcome, classify};
use crate::context::{Context, Meta, States};
use crate::dlq;
use crate::invoke::{Call, Called};
use crate::publish::{JetStreamOutlet, Outlet};
use crate::pull::{self, Acker, Pull, Pulled, Request, Wait};
use crate::registry::{HandlerDef, Kind};
use crate::reply::{self, Delivered};
use crate::topology::{self, Binding};

/// The fewest and most messages one pull asks for.
const MIN_BATCH: usize = 8;
const MAX_BATCH: usize = 1024;
/// The most bytes one pull asks for, so large payloads pull fewer at a time.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// A no-wait fetch still waiting for messages after this is given up.
const FETCH_ANSWERED_WITHIN: Duration = Duration::from_secs(1);
/// How long a pull waits at the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How often an idle pull hears from the server; two missed ones restart it
/// (async-nats would only report them, and ask again when the pull expires).
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How often, at most, an event loop notes its durable's ack floor, to
/// restart from there should the durable be deleted under it.
const RESUME_POINT_EVERY: Duration = Duration::from_secs(1);
/// The server counts a durable's pending messages for every info request,
/// which takes longer the longer the backlog (one at the start of a 200k
/// backlog cost it 7% of the run): after each note the loop waits at least
/// this many times as long as the note took.
const RESUME_POINT_COST: u32 = 100;
/// The most messages taken in a row without looking at anything else.
const FAST_RUN: u32 = 256;
/// Pause after a failed pull, doubling up to [`MAX_RETRY_PAUSE`] while
/// failures follow each other; any answer from the server, or a new
/// connection, starts it over.
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
    /// Pulls, acks and advisories go through it; shared by every delivery.
    pub(crate) client: Arc<async_nats::Client>,
    /// Changes when the client connects again: a waiting pull is gone.
    pub(crate) reconnects: tokio::sync::watch::Receiver<()>,
    /// For an event durable: the stream sequence to start from if it must be
    /// recreated (its last known ack floor + 1); 0 for a work queue, whose
    /// stream keeps what was not consumed.
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
/// The loop pulls on a subscription of its own ([`Pull`]). It first drains
/// whatever backlog there is with no-wait fetches ([`Puller::drain`]);
/// once caught up, it keeps pull requests waiting at the server, asking
/// for the next batch while the last is being worked, until a failure, a
/// reconnect or a leader change starts the loop over with a drain. When a
/// call slot is free the loop starts the call itself, and a call that
/// succeeds at its first poll is acked there, without a task ([`Inline`]).
/// Any other delivery becomes a task at once, which waits for a slot
/// (sending progress from the moment of delivery, so a message that waits
/// is never redelivered for waiting), finishes the call and settles it. At
/// most `concurrency + batch` messages are in the loop or in tasks, and the
/// subscription holds at most about one more batch pulled ahead:
/// [`held_at_most`] in all.
pub(crate) async fn run(
    worker: Arc<Worker>,
    mut consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let concurrency = worker.binding.def.concurrency() as usize;
    let batch = pull_batch(concurrency);
    let waiting = Request {
        batch,
        max_bytes: MAX_BATCH_BYTES,
        wait: Some(Wait {
            expires: PULL_EXPIRES,
            heartbeat: PULL_HEARTBEAT,
        }),
    };
    let mut reconnects = worker.reconnects.clone();
    reconnects.mark_unchanged();
    let mut p = Puller {
        next: pull::next_subject(&worker.stream, &worker.durable),
        held: Arc::new(Semaphore::new(concurrency + batch)),
        lanes: Arc::new(Lanes {
            slots: Arc::new(Semaphore::new(concurrency)),
            stop: stop.clone(),
            abort,
        }),
        in_flight: TaskTracker::new(),
        inline: Inline::default(),
        batch,
        worker,
    };
    let noting = note_resume_points(&p.worker, consumer.clone(), stop.clone());
    let mut pause = FIRST_RETRY_PAUSE;
    let mut news = consumer_news(&p.worker).await;
    let mut fast_run = FAST_RUN;
    // The inbox the loop pulls on: each drain fetch opens one of its own
    // ([`Puller::drain`]) and the waiting pull keeps the last; closed, and
    // what arrived handed back, after a failure and on stopping.
    let mut subscription: Option<Pull> = None;
    // A loop starts, and starts again after any failure, by draining the
    // backlog there may be; then it waits for new messages.
    let mut drain_first = true;

    'pull: while !stop.is_cancelled() {
        let pull = match &mut subscription {
            Some(pull) => pull,
            None => match Pull::open(p.worker.client.clone(), p.next.clone()).await {
                Ok(pull) => subscription.insert(pull),
                Err(e) => {
                    recover(&p.worker, &mut consumer, &stop, &mut pause, &e).await;
                    continue 'pull;
                }
            },
        };
        if std::mem::take(&mut drain_first) {
            match p.drain(pull, &stop, &mut news, &mut reconnects).await {
                Drained::CaughtUp => pause = FIRST_RETRY_PAUSE,
                Drained::Stopped => break 'pull,
                Drained::Failed(error) => {
                    // The waiting pull below reports and recovers what lasts.
                    tracing::debug!(
                        handler = p.worker.binding.def.name,
                        error,
                        "draining the backlog failed; waiting for messages instead"
                    );
                }
            }
        }
        // Messages asked for by the waiting requests and not yet come.
        let mut asked = 0;
        // Two heartbeat periods without a word from the server (message,
        // status or heartbeat) mean the requests are gone.
        let mut heartbeats =
            tokio::time::interval_at(tokio::time::Instant::now() + PULL_HEARTBEAT, PULL_HEARTBEAT);
        heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut heard, mut heard_at_tick, mut silent_ticks) = (0u64, 0u64, 0u32);
        let failed = loop {
            if asked <= batch / 2 {
                if let Err(e) = pull.ask(waiting).await {
                    break e;
                }
                asked += batch;
            }
            let hold = match p.held.clone().try_acquire_owned() {
                Ok(h) => h,
                Err(_) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => break 'pull,
                    hold = p.held.clone().acquire_owned() => match hold {
                        Ok(h) => h,
                        Err(_) => break 'pull,
                    },
                },
            };
            // Fast path: a message has already arrived and shutdown has not
            // begun. At least every FAST_RUN messages, and whenever none is
            // waiting, the select below also looks at shutdown, reconnects,
            // leader changes and heartbeats.
            let ready = if fast_run > 0 && !stop.is_cancelled() {
                pull.next().now_or_never()
            } else {
                None
            };
            let next = if let Some(next) = ready {
                fast_run -= 1;
                next
            } else {
                fast_run = FAST_RUN;
                tokio::select! {
                    biased;
                    // What already arrived is handed back when the loop
                    // closes its subscription, below.
                    _ = stop.cancelled() => break 'pull,
                    next = pull.next() => next,
                    Some(news) = news.next() => match news {
                        // A request waiting at the old leader is gone with
                        // it: hand back what arrived and pull from the new one.
                        News::LeaderElected => {
                            tracing::info!(handler = p.worker.binding.def.name, "consumer leader changed; pulling from the new leader");
                            pull.hand_back().await;
                            drain_first = true;
                            continue 'pull;
                        }
                        // A request that reached the server as the durable
                        // went may never be answered: recreate it now.
                        News::Deleted => break "the durable was deleted".to_owned(),
                    },
                    Ok(()) = reconnects.changed() => {
                        // The requests went with the old connection; what
                        // arrived before is still good.
                        tracing::info!(handler = p.worker.binding.def.name, "reconnected; pulling again");
                        pause = FIRST_RETRY_PAUSE;
                        drain_first = true;
                        continue 'pull;
                    }
                    _ = heartbeats.tick() => {
                        if heard == heard_at_tick {
                            silent_ticks += 1;
                        } else {
                            (heard_at_tick, silent_ticks) = (heard, 0);
                        }
                        if silent_ticks >= 2 {
                            break "missed two pull heartbeats".to_owned();
                        }
                        continue;
                    }
                }
            };
            heard += 1;
            match next {
                Some(Ok(Pulled::Message(msg))) => {
                    asked = asked.saturating_sub(1);
                    p.take(msg, hold).await;
                }
                Some(Ok(Pulled::Ended { unanswered })) => {
                    asked = asked.saturating_sub(unanswered.unwrap_or(batch));
                }
                Some(Ok(Pulled::Heartbeat)) => {}
                Some(Err(e)) => break e,
                None => break "the pull subscription ended".to_owned(),
            }
            // The server answered: the next failure waits the least again.
            pause = FIRST_RETRY_PAUSE;
        };
        // Any failure, missed heartbeats too: a pull the server no longer
        // knows of (its durable deleted in a race, say) is replaced now,
        // once the durable is there again, on a fresh inbox.
        if let Some(old) = subscription.take() {
            old.close().await;
        }
        recover(&p.worker, &mut consumer, &stop, &mut pause, &failed).await;
        drain_first = true;
    }
    if let Some(noting) = noting {
        noting.abort();
    }
    // Before waiting for the calls in flight: an interrupted call's nak
    // must not go back to a request still waiting on this inbox.
    if let Some(pull) = subscription.take() {
        pull.close().await;
    }
    p.in_flight.close();
    p.in_flight.wait().await;
}

/// One handler loop's state.
struct Puller {
    worker: Arc<Worker>,
    /// Where its pull requests go, built once.
    next: async_nats::Subject,
    /// Places for the messages the process holds: [`held_at_most`].
    held: Arc<Semaphore>,
    lanes: Arc<Lanes>,
    in_flight: TaskTracker,
    inline: Inline,
    /// Messages asked for per pull.
    batch: usize,
}

/// How draining the backlog ended.
enum Drained {
    /// A fetch came back less than half full: wait for messages now.
    CaughtUp,
    Stopped,
    Failed(String),
}

impl Puller {
    /// Pulls the backlog with no-wait fetches, each sized to the places
    /// free (at least half a batch), until one comes back less than half
    /// full.
    ///
    /// While a backlog lasts this costs the server less than a waiting
    /// pull: each fetch is one request that the server answers at once and
    /// forgets. Every fetched message has its place before it arrives, so
    /// the loop takes them as fast as they come and none waits unattended.
    ///
    /// Each fetch has an inbox of its own, as async-nats' `fetch` does:
    /// with one inbox for successive fetches the server spent 5–7% more
    /// CPU per message (interleaved A/B, BENCHMARKS.md). What the old
    /// inbox still holds is handed back first; a fetch read to its end
    /// leaves nothing there. The waiting pull goes on with the last inbox.
    async fn drain(
        &mut self,
        pull: &mut Pull,
        stop: &CancellationToken,
        news: &mut futures_util::stream::BoxStream<'static, News>,
        reconnects: &mut tokio::sync::watch::Receiver<()>,
    ) -> Drained {
        loop {
            let least = (self.batch / 2).max(1) as u32;
            let mut places = tokio::select! {
                biased;
                _ = stop.cancelled() => return Drained::Stopped,
                places = self.held.clone().acquire_many_owned(least) => match places {
                    Ok(places) => places,
                    Err(_) => return Drained::Stopped,
                },
            };
            let more = self
                .held
                .available_permits()
                .min(self.batch - places.num_permits());
            if let Ok(extra) = self.held.clone().try_acquire_many_owned(more as u32) {
                places.merge(extra);
            }
            let asked = places.num_permits();
            let fetch = Request {
                batch: asked,
                max_bytes: MAX_BATCH_BYTES,
                wait: None,
            };
            pull.hand_back().await;
            *pull = match Pull::open(self.worker.client.clone(), self.next.clone()).await {
                Ok(fresh) => fresh,
                Err(e) => return Drained::Failed(e),
            };
            if let Err(e) = pull.ask(fetch).await {
                return Drained::Failed(e);
            }
            let mut got = 0;
            let unanswered = tokio::time::sleep(FETCH_ANSWERED_WITHIN);
            tokio::pin!(unanswered);
            while got < asked {
                // As in the waiting pull: what has arrived is taken at once,
                // unless shutdown has begun (the select hands it back).
                let ready = match stop.is_cancelled() {
                    false => pull.next().now_or_never(),
                    true => None,
                };
                let next = match ready {
                    Some(next) => next,
                    None => tokio::select! {
                        biased;
                        // The loop closes the subscription, handing back
                        // what arrived.
                        _ = stop.cancelled() => return Drained::Stopped,
                        next = pull.next() => next,
                        // The fetch went to the old leader, or with the old
                        // connection: give it up; the loop fetches again, or
                        // waits with a pull if little had come.
                        Some(news) = news.next() => match news {
                            News::LeaderElected => break,
                            News::Deleted => return Drained::Failed("the durable was deleted".into()),
                        },
                        Ok(()) = reconnects.changed() => break,
                        // Lost, most likely: wait for messages with the
                        // waiting pull, which heartbeats tell is alive.
                        _ = &mut unanswered => return Drained::Failed("a fetch went unanswered".into()),
                    },
                };
                match next {
                    // Every message has its place: the loop reads at most
                    // `asked`, and holds that many places.
                    Some(Ok(Pulled::Message(msg))) => {
                        got += 1;
                        match places.split(1) {
                            Some(hold) => self.take(msg, hold).await,
                            None => pull.hand_back_one(&msg).await,
                        }
                    }
                    // The close of an earlier request, all of whose
                    // messages came: not this fetch's end.
                    Some(Ok(Pulled::Ended {
                        unanswered: Some(0),
                    })) => {}
                    Some(Ok(Pulled::Ended { .. })) => break,
                    Some(Ok(Pulled::Heartbeat)) => {}
                    Some(Err(e)) => return Drained::Failed(e),
                    None => return Drained::Failed("the pull subscription ended".into()),
                }
            }
            if got < asked / 2 {
                return Drained::CaughtUp;
            }
        }
    }

    /// Takes one pulled message: runs the call here if a slot is free and
    /// it finishes at its first poll, else gives the delivery a task.
    async fn take(&mut self, msg: async_nats::Message, hold: OwnedSemaphorePermit) {
        let worker = &self.worker;
        worker.counters.received.fetch_add(1, Ordering::Relaxed);
        let Some((ctx, payload)) = delivery(worker, msg) else {
            return;
        };
        let span = span_for(&ctx);
        let mut started = None;
        if self.inline.allowed()
            && let Ok(slot) = self.lanes.slots.clone().try_acquire_owned()
        {
            let at = std::time::Instant::now();
            let call = span
                .in_scope(|| Started::call(slot, worker.binding.def, payload.clone(), ctx.clone()));
            self.inline.took(at.elapsed());
            match call {
                Started::Finished(slot, called) if called.outcome == Outcome::Ok => {
                    // The common case, finished here without a task.
                    ack(worker, &ctx).instrument(span).await;
                    drop((slot, hold));
                    return;
                }
                call => started = Some(call),
            }
        }
        let delivery = settle(
            worker.clone(),
            ctx,
            payload,
            hold,
            self.lanes.clone(),
            started,
        );
        self.in_flight.spawn(delivery.instrument(span));
    }
}

/// For an event handler, a task of its own that notes, while messages
/// flow, where to restart should an operator delete the durable (its ack
/// floor + 1): at once from what startup learnt of the durable, then once a
/// second, or less often where asking costs the server more
/// ([`RESUME_POINT_COST`]). A note that is late only means more
/// redeliveries after such a deletion, never a message skipped. Asking
/// takes a round trip, which the pull loop does not wait for. `None` for
/// a work-queue handler, whose stream keeps what was not consumed.
fn note_resume_points(
    worker: &Arc<Worker>,
    consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if worker.binding.def.kind != Kind::Subscribe {
        return None;
    }
    // The server starts a durable's ack floor just below its first
    // sequence (0 on an empty stream, or for `deliver = "all"`), so floor
    // + 1 is where it has acked nothing yet, from the first moment: a
    // durable deleted before any note is recreated there, not at its
    // deliver policy, which for "new" would skip what came meanwhile.
    let floor = consumer.cached_info().ack_floor.stream_sequence;
    worker.resume_from.store(floor + 1, Ordering::Relaxed);
    let worker = worker.clone();
    Some(tokio::spawn(async move {
        // By name: it still answers for a durable recreated under it.
        let mut consumer = consumer;
        let mut noted_at = worker.counters.received.load(Ordering::Relaxed);
        let mut pause = RESUME_POINT_EVERY;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            let received = worker.counters.received.load(Ordering::Relaxed);
            if received == noted_at {
                continue;
            }
            noted_at = received;
            let asked = tokio::time::Instant::now();
            if let Ok(info) = consumer.info().await {
                let next = info.ack_floor.stream_sequence + 1;
                worker.resume_from.store(next, Ordering::Relaxed);
            }
            pause = RESUME_POINT_EVERY.max(asked.elapsed() * RESUME_POINT_COST);
        }
    }))
}

/// The most messages one process holds for a handler: running, waiting
/// for a slot, and pulled but not yet taken from the stream.
pub(crate) fn held_at_most(concurrency: usize) -> usize {
    concurrency + pull_batch(concurrency) * 2
}

/// What every delivery task of one loop shares: the call slots and the
/// shutdown signals.
struct Lanes {
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    abort: CancellationToken,
}

/// Messages asked for per pull: `16 x concurrency`, within
/// [`MIN_BATCH`]..=[`MAX_BATCH`]. Each pull costs the server a request, so
/// small pulls cost more than the handlers; the held messages wait in
/// tasks that keep them alive with progress.
pub(crate) fn pull_batch(concurrency: usize) -> usize {
    (concurrency * 16).clamp(MIN_BATCH, MAX_BATCH)
}

/// What the server announces about a loop's durable that the loop acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum News {
    /// A new consumer leader (clustered servers): requests waiting at the
    /// old one are gone.
    LeaderElected,
    /// The durable was deleted: a request that reached the server as it
    /// went may never be answered, not even with an error.
    Deleted,
}

/// The durable's leader-elected and deleted advisories, or nothing if they
/// cannot be subscribed to (missed heartbeats still recover, in 10 s).
async fn consumer_news(worker: &Worker) -> futures_util::stream::BoxStream<'static, News> {
    let (stream, durable) = (&worker.binding.stream, &worker.binding.durable);
    let mut subscribed = Vec::new();
    for (kind, news) in [
        ("LEADER_ELECTED", News::LeaderElected),
        ("DELETED", News::Deleted),
    ] {
        let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{stream}.{durable}");
        match worker.client.subscribe(subject).await {
            Ok(sub) => subscribed.push(sub.map(move |_| news).boxed()),
            Err(e) => {
                tracing::debug!(error = %e, kind, "no consumer advisories; missed heartbeats still recover")
            }
        }
    }
    futures_util::stream::select_all(subscribed)
        .chain(futures_util::stream::pending())
        .boxed()
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

/// The context of one delivery, and its payload; `None` (and logged) for a
/// message without JetStream metadata, which is left to `ack_wait`.
fn delivery(worker: &Worker, msg: async_nats::Message) -> Option<(Context, bytes::Bytes)> {
    let def = worker.binding.def;
    let async_nats::Message {
        subject,
        reply,
        payload,
        headers,
        ..
    } = msg;
    if !reply.as_deref().is_some_and(reply::is_jetstream) {
        tracing::error!(
            handler = def.name,
            ?reply,
            "delivery without a JetStream reply subject; leaving it to ack_wait"
        );
        return None;
    }
    let full = subject.as_str();
    let subject_start = full.len()
        - subject::strip_prefix(worker.prefix.as_deref(), full)
            .unwrap_or(full)
            .len();
    let meta = Meta {
        handler: def.name,
        durable: worker.durable.clone(),
        full_subject: subject,
        subject_start,
        headers: headers.unwrap_or_default(),
        message_id: OnceLock::new(),
        reply,
        delivered: OnceLock::new(),
        max_deliver: def.max_deliver(),
        stream: worker.stream.clone(),
    };
    let ctx = Context::new(
        meta,
        worker.states.clone(),
        worker.shared_outlet.clone(),
        Some(worker.client.clone()),
    );
    Some((ctx, payload))
}

/// The span every delivery runs in; its fields are computed only when a
/// subscriber wants it.
fn span_for(ctx: &Context) -> tracing::Span {
    let meta = ctx.meta();
    tracing::info_span!(
        "jetwire.handle",
        handler = meta.handler,
        subject = meta.subject(),
        stream = &*meta.stream,
        sequence = meta.delivered().stream_sequence,
        attempt = meta.delivered().attempt,
        message_id = meta.message_id(),
    )
}

/// A call started while holding a slot, as its first poll left it.
enum Started {
    /// Waiting on something.
    Running(OwnedSemaphorePermit, Call),
    /// Done.
    Finished(OwnedSemaphorePermit, Called),
}

impl Started {
    /// Starts `def`'s call on a delivery and polls it once.
    fn call(
        slot: OwnedSemaphorePermit,
        def: &HandlerDef,
        payload: bytes::Bytes,
        ctx: Context,
    ) -> Started {
        let mut call = Call::start(def, payload, ctx);
        match call.now() {
            Some(called) => Started::Finished(slot, called),
            None => Started::Running(slot, call),
        }
    }
}

/// Whether the loop runs calls itself before giving them a task.
///
/// A call that finishes at its first poll costs least run in the loop: no
/// task. But a handler that computes long before its first `.await` would
/// then run one call at a time on a multi-threaded runtime; so two first
/// polls in a row longer than [`INLINE_MAX`] send the next
/// [`INLINE_PAUSE`] deliveries straight to tasks, which run in parallel,
/// before the loop tries again. (One long poll alone is more often the
/// thread being preempted than the handler being slow.)
#[derive(Default)]
struct Inline {
    skip: u32,
    long_in_row: u32,
}

/// The longest first poll the loop keeps running calls itself after.
const INLINE_MAX: Duration = Duration::from_micros(50);
/// Deliveries sent to tasks after a longer first poll.
const INLINE_PAUSE: u32 = 1024;

impl Inline {
    fn allowed(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    fn took(&mut self, first_poll: Duration) {
        if first_poll <= INLINE_MAX {
            self.long_in_row = 0;
            return;
        }
        self.long_in_row += 1;
        if self.long_in_row >= 2 {
            self.long_in_row = 0;
            self.skip = INLINE_PAUSE;
        }
    }
}

/// Acks a delivery whose call succeeded.
async fn ack(worker: &Worker, ctx: &Context) {
    worker.counters.acked.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("acked");
    if let Some(acker) = ctx.acker()
        && let Err(e) = acker.ack_with(AckKind::Ack).await
    {
        tracing::warn!(error = %e, "could not send ack; the message will be redelivered");
    }
}

/// A delivery in a task of its own, from wherever the loop left it to
/// settled: waits for a slot, runs the call, then acks, naks or
/// dead-letters. Holds its place among the held messages until then.
///
/// The common case, a free slot and a call that finishes at its first
/// poll and succeeds, never gets here; waiting for a slot, a call that
/// waits, and a failure each run boxed, so the task stays small.
async fn settle(
    worker: Arc<Worker>,
    ctx: Context,
    payload: bytes::Bytes,
    _hold: OwnedSemaphorePermit,
    lanes: Arc<Lanes>,
    started: Option<Started>,
) {
    let def = worker.binding.def;
    let Some(acker) = ctx.acker() else { return };
    // Keep the delivery alive while it waits for a slot and while the call
    // runs: progress every half ack_wait, counted from here.
    let beat = (def.ack_wait() / 2).max(Duration::from_millis(50));
    let first_beat = tokio::time::Instant::now() + beat;
    let (started, first_beat) = match started {
        Some(started) => (started, first_beat),
        None => {
            let (slot, next_beat) = match lanes.slots.clone().try_acquire_owned() {
                Ok(slot) => (slot, first_beat),
                Err(_) => match Box::pin(wait_for_slot(acker, &lanes, first_beat, beat)).await {
                    Some(waited) => waited,
                    None => return,
                },
            };
            let call = Started::call(slot, def, payload.clone(), ctx.clone());
            (call, next_beat)
        }
    };
    let (_slot, called) = match started {
        Started::Finished(slot, called) => (slot, called),
        Started::Running(slot, call) => {
            let finished = finish_alive(call, acker, &lanes.abort, first_beat, beat);
            match Box::pin(finished).await {
                Some(called) => (slot, called),
                None => return interrupted(&worker),
            }
        }
    };
    // Only a failure needs the attempt (read from the reply subject).
    let action = match called.outcome {
        Outcome::Ok => Action::Ack,
        ref failed => classify(failed, ctx.attempt(), &def.policy()),
    };
    if action == Action::Ack {
        ack(&worker, &ctx).await;
    } else {
        Box::pin(settle_failure(
            &worker, &ctx, acker, payload, action, called,
        ))
        .await;
    }
}

fn interrupted(worker: &Worker) {
    worker.counters.interrupted.fetch_add(1, Ordering::Relaxed);
}

/// Waits for a call slot, sending progress from `first_beat` on. The slot
/// and when the next progress is due; `None` if shutdown came first (the
/// message is handed back, never started).
async fn wait_for_slot(
    acker: Acker<'_>,
    lanes: &Lanes,
    first_beat: tokio::time::Instant,
    beat: Duration,
) -> Option<(OwnedSemaphorePermit, tokio::time::Instant)> {
    let mut due = first_beat;
    let slot = lanes.slots.clone().acquire_owned();
    tokio::pin!(slot);
    loop {
        tokio::select! {
            biased;
            _ = lanes.stop.cancelled() => {
                let _ = acker.ack_with(AckKind::Nak(None)).await;
                return None;
            }
            slot = &mut slot => return slot.ok().map(|s| (s, due)),
            _ = tokio::time::sleep_until(due) => {
                send_progress(acker).await;
                due = tokio::time::Instant::now() + beat;
            }
        }
    }
}

/// Runs a call that did not finish at its first poll, sending progress
/// from `first_beat` on. `None` if it was interrupted by the shutdown
/// timeout (the message is handed back).
async fn finish_alive(
    call: Call,
    acker: Acker<'_>,
    abort: &CancellationToken,
    first_beat: tokio::time::Instant,
    beat: Duration,
) -> Option<Called> {
    let mut ticker = tokio::time::interval_at(first_beat, beat);
    let call = call.finish();
    tokio::pin!(call);
    loop {
        tokio::select! {
            called = &mut call => return Some(called),
            _ = ticker.tick() => send_progress(acker).await,
            _ = abort.cancelled() => {
                tracing::warn!("shutdown timeout: call interrupted, message handed back");
                let _ = acker.ack_with(AckKind::Nak(None)).await;
                return None;
            }
        }
    }
}

/// Carries out a nak or a dead letter.
async fn settle_failure(
    worker: &Worker,
    ctx: &Context,
    acker: Acker<'_>,
    payload: bytes::Bytes,
    action: Action,
    called: Called,
) {
    let def = worker.binding.def;
    let counters = &worker.counters;
    let error = called.error.as_deref().unwrap_or_default();
    let handler = def.name;
    let meta = ctx.meta();
    let (subject, stream) = (meta.subject(), &meta.stream);
    let Delivered {
        attempt,
        stream_sequence: sequence,
        ..
    } = meta.delivered();
    match action {
        Action::Ack => {}
        Action::Nak { delay } => {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, outcome = ?called.outcome, ?delay, error, "failed; will retry");
            nak(acker, delay).await;
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
                    nak(acker, def.policy().delay(attempt)).await;
                }
            }
        }
    }
}

async fn send_progress(acker: Acker<'_>) {
    if let Err(e) = acker.ack_with(AckKind::Progress).await {
        tracing::warn!(error = %e, "could not send progress");
    }
}

async fn nak(acker: Acker<'_>, delay: Duration) {
    let kind = if delay.is_zero() {
        AckKind::Nak(None)
    } else {
        AckKind::Nak(Some(delay))
    };
    if let Err(e) = acker.ack_with(kind).await {
        tracing::warn!(error = %e, "could not send nak; the message is redelivered after ack_wait");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_first_polls_in_a_row_send_the_next_deliveries_to_tasks() {
        let mut inline = Inline::default();
        assert!(inline.allowed());
        inline.took(INLINE_MAX);
        assert!(
            inline.allowed(),
            "a first poll of INLINE_MAX is still short"
        );
        inline.took(INLINE_MAX * 2);
        inline.took(INLINE_MAX);
        inline.took(INLINE_MAX * 2);
        assert!(inline.allowed(), "one long poll between short ones passes");
        inline.took(INLINE_MAX * 2);
        let to_tasks = (0..INLINE_PAUSE + 1).filter(|_| !inline.allowed()).count();
        assert_eq!(to_tasks, INLINE_PAUSE as usize);
        assert!(inline.allowed(), "then the loop tries again");
    }
}
