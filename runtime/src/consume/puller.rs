//! One stretch of pulling: drain the backlog with no-wait fetches, then
//! keep requests waiting at the server; take each message as it comes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::classify::Outcome;
use crate::consume::Shared;
use crate::consume::delivery::{self, Started};
use crate::consume::events::{self, ConsumerEvent};
use crate::consume::settle::{self, Slots};
use crate::handler::registry::HandlerDef;
use crate::policy::{Inline, RetryPause, Silence, Sizing};
use crate::protocol::pin::PinId;
use crate::protocol::pull::{self, Pull, PullError, Pulled, Request, Wait};
use crate::protocol::reply;

/// A no-wait fetch still waiting for messages after this is given up.
const FETCH_ANSWERED_WITHIN: Duration = Duration::from_secs(1);
/// How long a pull waits at the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How often an idle pull hears from the server ([`Silence`]).
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How a handler's waiting pulls last. A pinned durable's (a singleton's, a
/// partition's) pin moves to a standby
/// replica when the pinned one has not pulled for `ack_wait`, so it pulls
/// at least three times in that span.
fn waits(def: &HandlerDef, pinned: bool) -> Wait {
    if !pinned {
        return Wait {
            expires: PULL_EXPIRES,
            heartbeat: PULL_HEARTBEAT,
        };
    }
    let expires = (def.ack_wait() / 3).clamp(Duration::from_millis(300), PULL_EXPIRES);
    Wait {
        expires,
        heartbeat: (expires / 2).min(PULL_HEARTBEAT),
    }
}

/// The most messages taken in a row without looking at anything else.
const FAST_RUN: u32 = 256;

/// Why a stretch of pulling ended.
pub(super) enum Ended {
    Stopped,
    /// A leader change or a reconnect: the requests are gone, what arrived
    /// is still good. Pull again, draining first.
    Again,
    /// Pulling failed; recover before the next stretch.
    Failed(PullError),
    /// A pinned loop was away past half `ack_wait` ([`PinId::look`]): what
    /// arrived may be another replica's now. Abandon it and pull on standby.
    Away,
}

/// How draining the backlog ended.
enum Drained {
    /// A fetch came back less than half full: wait for messages now.
    CaughtUp,
    Ended(Ended),
}

/// What woke the loop.
enum Wake {
    Pulled(Option<Result<Pulled, PullError>>),
    /// The timer the caller passed: a heartbeat period, or a fetch's limit.
    Timer,
    Interrupted(Interrupt),
}

/// What, besides its messages, can end a stretch of pulling.
enum Interrupt {
    Stopped,
    Event(ConsumerEvent),
    Reconnected,
}

/// One handler loop's state.
pub(super) struct Puller {
    pub(super) shared: Arc<Shared>,
    /// Where its pull requests go, built once.
    next: async_nats::Subject,
    sizing: Sizing,
    /// The most bytes one pull asks for ([`Sizing::max_bytes`]).
    max_bytes: usize,
    /// How long a waiting pull lasts, and how often it hears from the server.
    waits: Wait,
    /// A singleton's pin, kept across pull subscriptions.
    pin: Option<Arc<PinId>>,
    /// The clock that tells the loop it was away (paused or starved past
    /// half `ack_wait`), when what it held may have gone to another
    /// replica: a pinned loop's pin, or one of its own for a handler
    /// whose every run is its last (`max_deliver = 1`), which must not run
    /// a delivery the server may have given to someone else meanwhile.
    clock: Option<Arc<PinId>>,
    /// How many times the clock had found the process away when
    /// the loop last looked.
    aways: u64,
    /// Places for the messages the process holds ([`Sizing::places`]).
    held: Arc<Semaphore>,
    slots: Arc<Slots>,
    in_flight: TaskTracker,
    inline: Inline,
    pub(super) pause: RetryPause,
    events: BoxStream<'static, ConsumerEvent>,
    reconnects: tokio::sync::watch::Receiver<()>,
    stop: CancellationToken,
    /// Messages taken in a row without a look at anything else.
    fast_run: u32,
}

impl Puller {
    pub(super) async fn new(
        shared: Arc<Shared>,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Puller {
        let sizing = shared.sizing();
        let mut reconnects = shared.reconnects.clone();
        reconnects.mark_unchanged();
        let b = &shared.binding;
        let pin: Option<Arc<PinId>> = b.pinned().then(|| Arc::new(PinId::new(b.def.ack_wait())));
        let clock = pin
            .clone()
            .or_else(|| (b.def.max_deliver() == 1).then(|| Arc::new(PinId::new(b.def.ack_wait()))));
        if let Some(clock) = &clock {
            tokio::spawn(PinId::keep_looking(
                Arc::downgrade(clock),
                clock.look_every(),
            ));
        }
        Puller {
            next: pull::next_subject(
                &shared.config.jetstream_api(),
                &b.route.stream,
                &b.route.durable,
            ),
            held: Arc::new(Semaphore::new(sizing.places())),
            slots: Arc::new(Slots {
                calls: Arc::new(Semaphore::new(sizing.concurrency)),
                stop: stop.clone(),
                abort,
            }),
            in_flight: TaskTracker::new(),
            inline: Inline::default(),
            pause: RetryPause::new(),
            events: events::subscribe(&shared).await,
            reconnects,
            stop,
            fast_run: FAST_RUN,
            max_bytes: Sizing::max_bytes(shared.client.server_info().max_payload),
            pin,
            clock,
            aways: 0,
            waits: waits(b.def, b.pinned()),
            sizing,
            shared,
        }
    }

    /// A fresh pull subscription on the handler's durable.
    fn open_pull(&self) -> impl Future<Output = Result<Pull, PullError>> + Send + 'static {
        let shared = &self.shared;
        let handbacks = shared.binding.handbacks.clone();
        Pull::open(
            shared.client.clone(),
            self.next.clone(),
            handbacks,
            self.pin.clone(),
        )
    }

    /// Whether a loop with a clock was found away since it last looked: then
    /// what arrived before is dropped, not run.
    fn was_away(&mut self) -> bool {
        let Some(pin) = &self.clock else { return false };
        let aways = pin.look();
        if std::mem::replace(&mut self.aways, aways) == aways {
            return false;
        }
        // A message read since may have carried the old pin back.
        pin.set(None);
        true
    }

    /// Whether this loop holds the server's pin now.
    pub(super) fn pinned(&self) -> bool {
        self.pin.as_ref().is_some_and(|pin| pin.held())
    }

    /// Waits for every delivery task.
    pub(super) async fn finish(self) {
        self.in_flight.close();
        self.in_flight.wait().await;
    }

    /// One stretch: open the subscription if need be, drain the backlog,
    /// then wait for messages until something ends it.
    pub(super) async fn stretch(&mut self, subscription: &mut Option<Pull>) -> Ended {
        let pull = match subscription {
            Some(pull) => pull,
            None => match self.open_pull().await {
                Ok(pull) => subscription.insert(pull),
                Err(e) => return Ended::Failed(e),
            },
        };
        match self.drain(pull).await {
            Drained::CaughtUp => self.pause.reset(),
            Drained::Ended(Ended::Failed(error)) => {
                // The waiting pull reports and recovers what lasts.
                tracing::debug!(
                    handler = self.shared.binding.def.name,
                    %error,
                    "draining the backlog failed; waiting for messages instead"
                );
            }
            Drained::Ended(ended) => return ended,
        }
        self.wait(pull).await
    }

    /// What happens next: a message that has already arrived is taken at
    /// once (at most [`FAST_RUN`] in a row), unless shutdown has begun;
    /// otherwise whichever comes first of shutdown, the next message, a
    /// consumer event, a reconnect and `timer`.
    async fn wake(&mut self, pull: &mut Pull, timer: impl Future) -> Wake {
        if self.fast_run > 0
            && !self.stop.is_cancelled()
            && let Some(next) = pull.next().now_or_never()
        {
            self.fast_run -= 1;
            return Wake::Pulled(next);
        }
        self.fast_run = FAST_RUN;
        tokio::select! {
            biased;
            // What already arrived is handed back when the loop closes
            // its subscription.
            _ = self.stop.cancelled() => Wake::Interrupted(Interrupt::Stopped),
            next = pull.next() => Wake::Pulled(next),
            Some(event) = self.events.next() => Wake::Interrupted(Interrupt::Event(event)),
            Ok(()) = self.reconnects.changed() => Wake::Interrupted(Interrupt::Reconnected),
            _ = timer => Wake::Timer,
        }
    }

    /// How an interruption ends a stretch.
    async fn interrupted(&mut self, pull: &mut Pull, interrupt: Interrupt) -> Ended {
        let handler = self.shared.binding.def.name;
        match interrupt {
            // A request waiting at the old leader is gone with it: hand
            // back what arrived and pull from the new one.
            Interrupt::Event(ConsumerEvent::LeaderElected) => {
                tracing::info!(
                    handler,
                    "consumer leader changed; pulling from the new leader"
                );
                pull.hand_back().await;
                Ended::Again
            }
            // A request that reached the server as the durable went may
            // never be answered: recreate it now.
            Interrupt::Event(ConsumerEvent::Deleted) => Ended::Failed(PullError::DurableDeleted),
            // The requests went with the old connection; what arrived
            // before is still good.
            Interrupt::Reconnected => {
                tracing::info!(handler, "reconnected; pulling again");
                self.pause.reset();
                Ended::Again
            }
            Interrupt::Stopped => Ended::Stopped,
        }
    }

    /// Pulls the backlog with no-wait fetches, each sized to the places
    /// free (at least half a batch), until one comes back less than half
    /// full.
    ///
    /// While a backlog lasts this costs the server less than a waiting
    /// pull: each fetch is one request that the server answers at once and
    /// forgets. Every fetched message has its place before it arrives, so
    /// the loop takes them as fast as they come and none waits unattended.
    /// Each fetch has an inbox of its own; what the old inbox still holds
    /// is handed back first. The waiting pull goes on with the last inbox.
    async fn drain(&mut self, pull: &mut Pull) -> Drained {
        loop {
            let Some(mut places) = self.places_for_fetch().await else {
                return Drained::Ended(Ended::Stopped);
            };
            let asked = places.num_permits();
            pull.hand_back().await;
            *pull = match self.open_pull().await {
                Ok(fresh) => fresh,
                Err(e) => return Drained::Ended(Ended::Failed(e)),
            };
            let fetch = Request {
                batch: asked,
                max_bytes: self.max_bytes,
                wait: None,
            };
            if let Err(e) = pull.ask(fetch).await {
                return Drained::Ended(Ended::Failed(e));
            }
            let mut got = 0;
            let unanswered = tokio::time::sleep(FETCH_ANSWERED_WITHIN);
            tokio::pin!(unanswered);
            while got < asked {
                let next = match self.wake(pull, &mut unanswered).await {
                    Wake::Pulled(next) => next,
                    // Lost, most likely: wait for messages with the
                    // waiting pull, which heartbeats tell is alive.
                    Wake::Timer => {
                        return Drained::Ended(Ended::Failed(PullError::Unanswered));
                    }
                    // The fetch went to the old leader, or with the old
                    // connection: give it up; the loop fetches again, or
                    // waits with a pull if little had come.
                    Wake::Interrupted(
                        Interrupt::Event(ConsumerEvent::LeaderElected) | Interrupt::Reconnected,
                    ) => break,
                    Wake::Interrupted(other) => {
                        return Drained::Ended(self.interrupted(pull, other).await);
                    }
                };
                match next {
                    // Every message has its place: the loop reads at most
                    // `asked`, and holds that many places.
                    Some(Ok(Pulled::Message(msg))) if self.was_away() => {
                        pull.forget(&msg).await;
                        return Drained::Ended(Ended::Away);
                    }
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
                    Some(Err(e)) => return Drained::Ended(Ended::Failed(e)),
                    None => {
                        return Drained::Ended(Ended::Failed(PullError::Closed));
                    }
                }
            }
            if got < asked / 2 {
                return Drained::CaughtUp;
            }
        }
    }

    /// Places for one fetch: at least half a batch, waited for, plus what
    /// else is free up to a batch. `None` once shutdown has begun.
    async fn places_for_fetch(&mut self) -> Option<OwnedSemaphorePermit> {
        let batch = self.sizing.batch;
        let least = (batch / 2).max(1) as u32;
        let mut places = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return None,
            places = self.held.clone().acquire_many_owned(least) => places.ok()?,
        };
        let more = self
            .held
            .available_permits()
            .min(batch - places.num_permits());
        if let Ok(extra) = self.held.clone().try_acquire_many_owned(more as u32) {
            places.merge(extra);
        }
        Some(places)
    }

    /// Keeps pull requests waiting at the server, asking for the next
    /// batch while the last is being worked, until something ends it.
    async fn wait(&mut self, pull: &mut Pull) -> Ended {
        let batch = self.sizing.batch;
        let waiting = Request {
            batch,
            max_bytes: self.max_bytes,
            wait: Some(self.waits),
        };
        let beat = self.waits.heartbeat;
        // Messages asked for by the waiting requests and not yet come.
        let mut asked = 0;
        let mut heartbeats = tokio::time::interval_at(Instant::now() + beat, beat);
        heartbeats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut silence = Silence::default();
        loop {
            if asked <= batch / 2 {
                if let Err(e) = pull.ask(waiting).await {
                    return Ended::Failed(e);
                }
                asked += batch;
            }
            let hold = match self.held.clone().try_acquire_owned() {
                Ok(hold) => hold,
                Err(_) => tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return Ended::Stopped,
                    hold = self.held.clone().acquire_owned() => match hold {
                        Ok(hold) => hold,
                        Err(_) => return Ended::Stopped,
                    },
                },
            };
            let next = match self.wake(pull, heartbeats.tick()).await {
                Wake::Pulled(next) => next,
                Wake::Timer if silence.period_ended() => {
                    return Ended::Failed(PullError::Silent);
                }
                Wake::Timer => continue,
                Wake::Interrupted(other) => return self.interrupted(pull, other).await,
            };
            silence.heard();
            self.shared.counters.consuming(true);
            match next {
                Some(Ok(Pulled::Message(msg))) if self.was_away() => {
                    pull.forget(&msg).await;
                    return Ended::Away;
                }
                Some(Ok(Pulled::Message(msg))) => {
                    asked = asked.saturating_sub(1);
                    self.take(msg, hold).await;
                }
                Some(Ok(Pulled::Ended { unanswered })) => {
                    asked = asked.saturating_sub(unanswered.unwrap_or(batch));
                }
                Some(Ok(Pulled::Heartbeat)) => {}
                Some(Err(e)) => return Ended::Failed(e),
                None => return Ended::Failed(PullError::Closed),
            }
            // The server answered: the next failure waits the least again.
            self.pause.reset();
        }
    }

    /// Takes one pulled message: runs the call here if a slot is free, it
    /// is the message's first delivery and not its last allowed run, and it
    /// finishes at its first poll; else gives the delivery a task.
    async fn take(&mut self, msg: async_nats::Message, hold: OwnedSemaphorePermit) {
        let shared = &self.shared;
        shared.counters.received();
        let Some((ctx, payload)) = delivery::open(shared, msg) else {
            return;
        };
        let span = delivery::span_for(shared, &ctx);
        let mut started = None;
        if self.inline.allowed()
            && ctx.max_deliver() > 1
            && ctx
                .meta()
                .reply
                .as_deref()
                .is_some_and(reply::is_first_delivery)
            && let Ok(slot) = self.slots.calls.clone().try_acquire_owned()
        {
            let at = std::time::Instant::now();
            let call = span.in_scope(|| Started::call(slot, shared, payload.clone(), ctx.clone()));
            self.inline.took(at.elapsed());
            match call {
                Started::Finished(slot, called) if called.outcome == Outcome::Ok => {
                    // The common case, finished here without a task.
                    settle::ack(shared, &ctx).instrument(span).await;
                    drop((slot, hold));
                    return;
                }
                call => started = Some(call),
            }
        }
        let fence = self.clock.as_ref().map(PinId::fence);
        let task = settle::settle(
            shared.clone(),
            ctx,
            payload,
            hold,
            (self.slots.clone(), fence),
            started,
        );
        self.in_flight.spawn(task.instrument(span));
    }
}
