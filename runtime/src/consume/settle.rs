//! A delivery from its call to its end: wait for a call slot, run the
//! call with progress, then ack, nak, or dead-letter and term, as
//! [`classify`] decides.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::classify::{Action, Answer, Counted, DlqReason, Outcome, classify, settlement};
use crate::consume::Shared;
use crate::consume::delivery::Started;
use crate::consume::tally::Tally;
use crate::dlq::{
    self,
    letter::{self, Failed},
};
use crate::handler::context::Context;
use crate::handler::invoke::{Call, Called};
use crate::policy::runs::Count;
use crate::protocol::ack::{self, Acker};
use crate::protocol::pull::PinId;

/// What every delivery task of one loop shares: the call slots and the
/// shutdown signals.
pub(super) struct Slots {
    /// One permit per call in flight (`concurrency`).
    pub(super) calls: Arc<Semaphore>,
    /// Shutdown began: a delivery still waiting for a slot is handed back.
    pub(super) stop: CancellationToken,
    /// The shutdown timeout passed: running calls are interrupted.
    pub(super) abort: CancellationToken,
    /// A pinned loop's pin (a singleton's, a partition's): its calls stop
    /// when it is lost, or when the process was away (paused, cut off)
    /// for longer than `ack_wait`, after which the pin has moved.
    pub(super) pin: Option<Arc<PinId>>,
}

/// Acks a delivery whose call succeeded: [`settlement`]'s `Ack` row, on
/// the path that needs no letter.
pub(super) async fn ack(shared: &Shared, ctx: &Context) {
    let plan = settlement(Action::Ack, false);
    shared.counters.acked();
    tracing::debug!(attempt = ctx.attempt(), "acked");
    if let Some(acker) = ctx.acker() {
        answer(acker, plan.answer).await;
    }
    ctx.clear_kept(plan.kept).await;
}

/// A delivery in a task of its own, from wherever the loop left it to
/// settled: waits for a slot, runs the call, then acks, naks or
/// dead-letters. Holds its place among the held messages until then.
///
/// The common case, a free slot and a call that finishes at its first
/// poll and succeeds, never gets here; waiting for a slot, a call that
/// waits, and a failure each run boxed, so the task stays small.
pub(super) async fn settle(
    shared: Arc<Shared>,
    ctx: Context,
    payload: bytes::Bytes,
    _hold: OwnedSemaphorePermit,
    slots: Arc<Slots>,
    started: Option<Started>,
) {
    let def = shared.binding.def;
    let Some(acker) = ctx.acker() else { return };
    // Keep the delivery alive while it waits for a slot and while the call
    // runs: progress every half ack_wait, counted from here.
    let beat = (def.ack_wait() / 2).max(Duration::from_millis(50));
    let first_beat = Instant::now() + beat;
    // A call the loop started itself is a first delivery that is not the
    // last: it has no record.
    let (started, first_beat, tally) = match started {
        Some(started) => (started, first_beat, None),
        None => {
            let mut tally = Box::pin(Tally::of(&shared, &ctx)).await;
            if tally.count(&ctx) == Count::Exhausted {
                let called = Called {
                    outcome: Outcome::Transient,
                    error: Some(letter::NEVER_ANSWERED.to_owned()),
                };
                let action = Action::DeadLetter(DlqReason::Exhausted);
                if Box::pin(settle_failure(
                    &shared, &ctx, acker, payload, action, called,
                ))
                .await
                {
                    tally.settled(&shared).await;
                }
                return;
            }
            let (slot, next_beat) = match slots.calls.clone().try_acquire_owned() {
                Ok(slot) => (slot, first_beat),
                Err(_) => match Box::pin(wait_for_slot(acker, &slots, first_beat, beat)).await {
                    Some(waited) => waited,
                    None => {
                        // Shutdown came first: handed back, never started.
                        tally.hand_back(&shared).await;
                        let _ = acker.ack_with(AckKind::Nak(None)).await;
                        return;
                    }
                },
            };
            tally.begin(&shared, &ctx).await;
            let call = Started::call(
                slot,
                def,
                payload.clone(),
                ctx.clone(),
                &shared.counters.metrics,
            );
            (call, next_beat, Some(tally))
        }
    };
    let (_slot, called) = match started {
        Started::Finished(slot, called) => (slot, called),
        Started::Running(slot, call, _timed) => {
            let fence = slots.pin.as_ref().map(|pin| Fence {
                lost: pin.fence(),
                ack_wait: def.ack_wait(),
            });
            let finished = finish_alive(call, acker, &slots.abort, fence, first_beat, beat);
            match Box::pin(finished).await {
                Some(called) => (slot, called),
                None => return shared.counters.interrupted(),
            }
        }
    };
    // Only a failure needs the attempt (read from the reply subject).
    let action = match called.outcome {
        Outcome::Ok => Action::Ack,
        ref failed => classify(failed, ctx.attempt(), &def.policy()),
    };
    let settled = if action == Action::Ack {
        ack(&shared, &ctx).await;
        true
    } else {
        Box::pin(settle_failure(
            &shared, &ctx, acker, payload, action, called,
        ))
        .await
    };
    if settled && let Some(tally) = tally {
        tally.settled(&shared).await;
    }
}

/// Waits for a call slot, sending progress from `first_beat` on. The slot
/// and when the next progress is due; `None` if shutdown came first.
async fn wait_for_slot(
    acker: Acker<'_>,
    slots: &Slots,
    first_beat: Instant,
    beat: Duration,
) -> Option<(OwnedSemaphorePermit, Instant)> {
    let mut due = first_beat;
    let slot = slots.calls.clone().acquire_owned();
    tokio::pin!(slot);
    loop {
        tokio::select! {
            biased;
            _ = slots.stop.cancelled() => return None,
            slot = &mut slot => return slot.ok().map(|s| (s, due)),
            _ = tokio::time::sleep_until(due) => {
                send_progress(acker).await;
                due = Instant::now() + beat;
            }
        }
    }
}

/// What stops a pinned loop's call: its pin lost, or a gap of more than
/// `ack_wait` since the call was last known alive (the process paused or
/// cut off while the pin moved).
struct Fence {
    lost: CancellationToken,
    ack_wait: Duration,
}

/// Runs a call that did not finish at its first poll, sending progress
/// from `first_beat` on. `None` if it was interrupted by the shutdown
/// timeout (the message is handed back), or stopped by its `fence` (the
/// message is another replica's by then: fencing bounds what a stale call
/// does, the handler's idempotency covers what it did).
async fn finish_alive(
    call: Call,
    acker: Acker<'_>,
    abort: &CancellationToken,
    fence: Option<Fence>,
    first_beat: Instant,
    beat: Duration,
) -> Option<Called> {
    let mut ticker = tokio::time::interval_at(first_beat, beat);
    // When the call was last known alive, in ms since it began.
    let began = Instant::now();
    let alive = std::sync::atomic::AtomicU64::new(0);
    let since = || u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    let away = |f: &Fence| {
        let gap = since().saturating_sub(alive.load(std::sync::atomic::Ordering::Relaxed));
        u128::from(gap) > f.ack_wait.as_millis()
    };
    let call = call.finish();
    tokio::pin!(call);
    // The call is polled only while it is known alive: after a pause past
    // `ack_wait`, it stops before it takes another step.
    let fenced_call = std::future::poll_fn(|cx| match &fence {
        Some(f) if away(f) => std::task::Poll::Ready(None),
        _ => call.as_mut().poll(cx).map(Some),
    });
    tokio::pin!(fenced_call);
    let lost = async {
        match &fence {
            Some(f) => f.lost.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    loop {
        tokio::select! {
            // A call that has finished is settled, even if the shutdown
            // timeout passed at the same moment.
            biased;
            called = &mut fenced_call => {
                if called.is_none() {
                    tracing::warn!("the process was away past ack_wait and the pin moved: call stopped; the replica pinned now runs the message");
                }
                return called;
            }
            _ = &mut lost => {
                tracing::warn!("the pin moved to another replica: call stopped; that replica runs the message");
                return None;
            }
            _ = ticker.tick() => {
                send_progress(acker).await;
                alive.store(since(), std::sync::atomic::Ordering::Relaxed);
            }
            _ = abort.cancelled() => {
                tracing::warn!("shutdown timeout: call interrupted, message handed back");
                let _ = acker.ack_with(AckKind::Nak(None)).await;
                return None;
            }
        }
    }
}

/// Carries out a failed call's [`Settlement`]: the letter stored first
/// (a nak if it cannot be), the answer, the counters, what it kept.
/// Whether the message left its durable.
async fn settle_failure(
    shared: &Shared,
    ctx: &Context,
    acker: Acker<'_>,
    payload: bytes::Bytes,
    action: Action,
    called: Called,
) -> bool {
    let def = shared.binding.def;
    let plan = settlement(action, def.reads_dead_letters());
    let error = called.error.as_deref().unwrap_or_default();
    let meta = ctx.meta();
    let (handler, subject, stream) = (meta.handler, meta.subject(), &meta.stream);
    let (attempt, sequence) = (meta.attempt(), meta.delivered().stream_sequence);
    if let Some(reason) = plan.letter {
        let letter = letter::letter(Failed::delivery(meta, payload, reason, error));
        if let Err(e) = dlq::stream::store(&shared.js, &shared.outlet, &shared.config, letter).await
        {
            // Not stored: keep the original. On the last attempt the
            // server's max-deliveries advisory moves it later.
            tracing::error!(handler = %handler, %subject, %stream, sequence, %reason, error = %e, "could not store the dead letter; handing the message back");
            nak(acker, def.policy().delay(attempt)).await;
            return false;
        }
    }
    let counters = &shared.counters;
    match plan.counted {
        Counted::Acked => counters.acked(),
        Counted::Retried => {
            counters.retried();
            tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, outcome = ?called.outcome, error, "failed; will retry");
        }
        Counted::DeadLettered(reason) => {
            counters.dead_lettered(reason);
            tracing::warn!(handler = %handler, %subject, %stream, sequence, attempt, %reason, error, "dead-lettered");
        }
        Counted::GaveUp(reason) => {
            // A handler of dead letters failed: the letter stays in the
            // dead-letter stream; writing another would only feed it again.
            counters.dead_lettered(reason);
            tracing::error!(handler = %handler, %subject, %stream, sequence, attempt, %reason, error, "a dead-letter handler gave up on a letter; the letter stays in the dead-letter stream");
        }
        Counted::Discarded => {
            counters.discarded();
            tracing::info!(handler = %handler, %subject, %stream, sequence, attempt, reason = error, "discarded by the handler; no dead letter");
        }
    }
    answer(acker, plan.answer).await;
    ctx.clear_kept(plan.kept).await;
    plan.leaves
}

/// Sends `answer` for a delivery.
async fn answer(acker: Acker<'_>, answer: Answer) {
    let kind = match answer {
        Answer::Nak(delay) => return nak(acker, delay).await,
        Answer::Ack => AckKind::Ack,
        Answer::Term => AckKind::Term,
    };
    if let Err(e) = acker.ack_with(kind).await {
        tracing::warn!(error = %e, ?answer, "could not answer the delivery; it comes again (a dead letter already stored is not stored twice)");
    }
}

async fn send_progress(acker: Acker<'_>) {
    if let Err(e) = acker.ack_with(AckKind::Progress).await {
        tracing::warn!(error = %e, "could not send progress");
    }
}

async fn nak(acker: Acker<'_>, delay: Duration) {
    if let Err(e) = acker.ack_with(ack::nak(delay)).await {
        tracing::warn!(error = %e, "could not send nak; the message is redelivered after ack_wait");
    }
}
