//! A delivery from its call to its end: wait for a call slot, run the
//! call with progress, then ack, nak, or dead-letter and term, as
//! [`classify`] decides.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::classify::{
    Acked, Action, Answer, Counted, DlqReason, Outcome, Settlement, classify, counted, settlement,
    settlement_after,
};
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
use crate::protocol::pin::Fence;

/// What every delivery task of one loop shares: the call slots and the
/// shutdown signals.
pub(super) struct Slots {
    /// One permit per call in flight (`concurrency`).
    pub(super) calls: Arc<Semaphore>,
    /// Shutdown began: a delivery still waiting for a slot is handed back.
    pub(super) stop: CancellationToken,
    /// The shutdown timeout passed: running calls are interrupted.
    pub(super) abort: CancellationToken,
}

/// Acks a delivery whose call succeeded: [`settlement`]'s `Ack` row, on
/// the path that needs no letter.
pub(super) async fn ack(shared: &Shared, ctx: &Context) {
    let plan = settlement(Action::Ack, false);
    shared.counters.acked();
    tracing::debug!(attempt = ctx.attempt(), "acked");
    // A handler that acked with `ctx.ack()` was answered already.
    if let Some(acker) = ctx.acker()
        && ctx.acked_by(false) == Acked::No
    {
        answer(acker, plan.answer).await;
    }
    ctx.clear_kept(plan.kept).await;
    ctx.end_output(plan.leaves).await;
}

/// A delivery in a task of its own, from wherever the loop left it to
/// settled: waits for a slot, runs the call, then acks, naks or
/// dead-letters. Holds its place among the held messages until then.
///
/// The common case, a free slot and a call that finishes at its first
/// poll and succeeds, never gets here; waiting for a slot, a call that
/// waits, and a failure each run boxed, so the task stays small.
///
/// A pinned loop's delivery (a singleton's, a partition's) comes with the
/// fence of the pin it was taken under: once that pin is lost, or the
/// process was found away past it, the delivery is dropped unanswered
/// before its call begins, and a running call stops. The replica pinned
/// now runs the message, after `ack_wait`.
pub(super) async fn settle(
    shared: Arc<Shared>,
    ctx: Context,
    payload: bytes::Bytes,
    _hold: OwnedSemaphorePermit,
    (slots, fence): (Arc<Slots>, Option<Fence>),
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
    let (started, first_beat, mut tally) = match started {
        Some(started) => (started, first_beat, None),
        None => {
            let mut tally = Box::pin(Tally::of(&shared, &ctx)).await;
            if tally.count(&ctx) == Count::Exhausted {
                let called = Called {
                    outcome: Outcome::Transient,
                    error: Some(letter::NEVER_ANSWERED.to_owned()),
                    next: None,
                };
                let plan = settlement(Action::DeadLetter(DlqReason::Exhausted), false);
                let settled = Box::pin(carry_out(&shared, &ctx, acker, payload, plan, called));
                tally.ended(&shared, settled.await);
                return;
            }
            let waited = match slots.calls.clone().try_acquire_owned() {
                Ok(slot) => Waited::Slot(slot, first_beat),
                Err(_) => {
                    Box::pin(wait_for_slot(
                        acker,
                        &slots,
                        fence.as_ref(),
                        first_beat,
                        beat,
                    ))
                    .await
                }
            };
            let (slot, next_beat) = match waited {
                Waited::Slot(slot, _) if fence.as_ref().is_some_and(|f| !f.holds()) => {
                    drop(slot);
                    return drop_fenced(&shared, tally).await;
                }
                Waited::Slot(slot, next_beat) => (slot, next_beat),
                Waited::Fenced => return drop_fenced(&shared, tally).await,
                Waited::Stopped => {
                    // Shutdown came first: handed back, never started.
                    tally.hand_back(&shared).await;
                    let _ = acker.ack_with(AckKind::Nak(None)).await;
                    return;
                }
            };
            if def.acks_first() && !Box::pin(ack_first(acker, &ctx)).await {
                tally.hand_back(&shared).await;
                let _ = acker.ack_with(AckKind::Nak(None)).await;
                return;
            }
            tally.begin(&shared, &ctx).await;
            let call = Started::call(slot, &shared, payload.clone(), ctx.clone());
            (call, next_beat, Some(tally))
        }
    };
    let (_slot, called) = match started {
        Started::Finished(slot, called) => (slot, called),
        Started::Running(slot, call, _timed) => {
            let finished = finish_alive(call, acker, &slots.abort, fence, first_beat, beat);
            match Box::pin(finished).await {
                Some(called) => (slot, called),
                None => return shared.counters.interrupted(),
            }
        }
    };
    // Only a failure needs the attempt (read from the reply subject). A
    // call the loop started has no record yet: room for a pause.
    let action = match called.outcome {
        Outcome::Ok => Action::Ack,
        failed => {
            let room = tally.as_ref().is_none_or(Tally::may_pause);
            classify(&counted(failed, room), ctx.attempt(), &def.policy())
        }
    };
    let acked = ctx.acked_by(def.acks_first());
    let settled = if action == Action::Ack && acked == Acked::No {
        ack(&shared, &ctx).await;
        true
    } else {
        let plan = settlement_after(action, def.reads_dead_letters(), acked);
        if plan.counted == Counted::Paused {
            // Recorded before the nak, so the next delivery is this run.
            let mut paused = match tally.take() {
                Some(tally) => tally,
                None => Box::pin(Tally::of(&shared, &ctx)).await,
            };
            paused.hand_back(&shared).await;
            tally = Some(paused);
        }
        Box::pin(carry_out(&shared, &ctx, acker, payload, plan, called)).await
    };
    if let Some(tally) = tally {
        tally.ended(&shared, settled);
    }
}

/// Acks a delivery of an `ack = "first"` handler before its call, and
/// waits for the server to confirm it; whether it did. One that did not
/// is handed back unrun: at most once means never run unacked.
async fn ack_first(acker: Acker<'_>, ctx: &Context) -> bool {
    match acker.ack_confirmed().await {
        Ok(()) => {
            ctx.acked_first();
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not acknowledge before the call (ack = \"first\"); handed back unrun");
            false
        }
    }
}

/// How waiting for a call slot ended.
enum Waited {
    /// The slot, and when the next progress is due.
    Slot(OwnedSemaphorePermit, Instant),
    /// Shutdown came first.
    Stopped,
    /// The pin the delivery was taken under was lost first.
    Fenced,
}

/// Waits for a call slot, sending progress from `first_beat` on while the
/// delivery's pin (if any) holds.
async fn wait_for_slot(
    acker: Acker<'_>,
    slots: &Slots,
    fence: Option<&Fence>,
    first_beat: Instant,
    beat: Duration,
) -> Waited {
    let mut due = first_beat;
    let slot = slots.calls.clone().acquire_owned();
    tokio::pin!(slot);
    let lost = async {
        match fence {
            Some(f) => f.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    loop {
        tokio::select! {
            biased;
            _ = slots.stop.cancelled() => return Waited::Stopped,
            _ = &mut lost => return Waited::Fenced,
            slot = &mut slot => return match slot {
                Ok(slot) => Waited::Slot(slot, due),
                Err(_) => Waited::Stopped,
            },
            _ = tokio::time::sleep_until(due) => {
                if fence.is_some_and(|f| !f.holds()) {
                    return Waited::Fenced;
                }
                send_progress(acker).await;
                due = Instant::now() + beat;
            }
        }
    }
}

/// Drops a fenced delivery (a pinned loop's, a `max_deliver = 1`
/// loop's) whose fence fell before its call began: recorded as handed
/// back, not answered (another replica may hold it already).
async fn drop_fenced(shared: &Shared, mut tally: Tally) {
    tracing::info!(
        "the pin was lost, or the process was away, before the call began: delivery dropped; another replica runs it"
    );
    tally.hand_back(shared).await;
    shared.counters.interrupted();
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
    let call = call.finish();
    tokio::pin!(call);
    // The call is polled only while its pin holds: after a pause past
    // half `ack_wait`, it stops before it takes another step.
    let fenced_call = std::future::poll_fn(|cx| match &fence {
        Some(f) if !f.holds() => std::task::Poll::Ready(None),
        _ => call.as_mut().poll(cx).map(Some),
    });
    tokio::pin!(fenced_call);
    let lost = async {
        match &fence {
            Some(f) => f.lost().await,
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
                    tracing::warn!("the process was away past half of ack_wait, and the message may be another replica's by now: call stopped");
                }
                return called;
            }
            _ = &mut lost => {
                tracing::warn!("the pin moved to another replica: call stopped; that replica runs the message");
                return None;
            }
            _ = ticker.tick() => {
                send_progress(acker).await;
            }
            _ = abort.cancelled() => {
                tracing::warn!("shutdown timeout: call interrupted, message handed back");
                let _ = acker.ack_with(AckKind::Nak(None)).await;
                return None;
            }
        }
    }
}

/// Carries out a call's [`Settlement`] (a failure's, or any call's whose
/// message was acknowledged before it ended): the letter stored first (a
/// nak if it cannot be, unless the message was acked already), the
/// answer, the counters, what it kept. Whether the message left its
/// durable.
async fn carry_out(
    shared: &Shared,
    ctx: &Context,
    acker: Acker<'_>,
    payload: bytes::Bytes,
    plan: Settlement,
    called: Called,
) -> bool {
    let def = shared.binding.def;
    let error = called.error.as_deref().unwrap_or_default();
    let meta = ctx.meta();
    let (handler, subject, stream) = (meta.handler, meta.subject(), &meta.stream);
    let (attempt, sequence) = (meta.attempt(), meta.delivered().stream_sequence);
    if let Some(reason) = plan.letter {
        let now = shared.config.clock().now();
        let letter = letter::letter(Failed::delivery(meta, payload, reason, error, now));
        if let Err(e) = dlq::stream::store(&shared.js, &shared.outlet, &shared.config, letter).await
        {
            if plan.answer == Answer::Already {
                tracing::error!(handler = %handler, %subject, %stream, sequence, %reason, error = %e, "the call failed after its ack and its dead letter could not be stored: the message is gone");
            } else {
                // Not stored: keep the original. On the last attempt the
                // server's max-deliveries advisory moves it later.
                tracing::error!(handler = %handler, %subject, %stream, sequence, %reason, error = %e, "could not store the dead letter; handing the message back");
                nak(acker, def.policy().delay(attempt)).await;
                return false;
            }
        }
    }
    if let (Counted::Continued, Some(next)) = (plan.counted, &called.next)
        && let Err(e) = ctx.publish_next(next).await
    {
        tracing::warn!(handler = %handler, %subject, %stream, sequence, error = %e, "could not publish the next step; the message comes again and continues then");
        if plan.answer != Answer::Already {
            nak(acker, def.policy().delay(attempt)).await;
        }
        return false;
    }
    let counters = &shared.counters;
    match plan.counted {
        Counted::Acked => counters.acked(),
        Counted::Continued => {
            counters.continued();
            tracing::debug!(handler = %handler, %subject, %stream, sequence, attempt, "continued with the next step");
        }
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
        Counted::Paused => {
            counters.paused();
            let delay = match plan.answer {
                Answer::Nak(d) => d,
                _ => Duration::ZERO,
            };
            tracing::info!(handler = %handler, %subject, %stream, sequence, attempt, ?delay, "paused; runs again as the same attempt");
        }
        Counted::Discarded => {
            counters.discarded();
            tracing::info!(handler = %handler, %subject, %stream, sequence, attempt, reason = error, "discarded by the handler; no dead letter");
        }
        Counted::FailedAfterAck => {
            counters.failed_after_ack();
            let lettered = plan.letter.map(DlqReason::as_str);
            tracing::warn!(handler = %handler, %subject, %stream, sequence, outcome = ?called.outcome, error, dead_letter = lettered, "failed after the message was acknowledged; not retried");
        }
    }
    answer(acker, plan.answer).await;
    ctx.clear_kept(plan.kept).await;
    ctx.end_output(plan.leaves).await;
    plan.leaves
}

/// Sends `answer` for a delivery.
async fn answer(acker: Acker<'_>, answer: Answer) {
    let kind = match answer {
        Answer::Nak(delay) => return nak(acker, delay).await,
        Answer::Ack => AckKind::Ack,
        Answer::Term => AckKind::Term,
        Answer::Already => return,
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
