//! Where an event durable deleted under a running loop is recreated, and
//! the recovery after a failed pull.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::consume::Shared;
use crate::handler::registry::Kind;
use crate::protocol::pull::PullError;
use crate::topology::consumers;

/// How often, at most, an event loop notes its durable's ack floor, to
/// restart from there should the durable be deleted under it.
const RESUME_POINT_EVERY: Duration = Duration::from_secs(1);
/// The server counts a durable's pending messages for every info request,
/// which takes longer the longer the backlog: after each note the loop
/// waits at least this many times as long as the note took.
const RESUME_POINT_COST: u32 = 100;

/// For an event handler, a task of its own that notes, while messages
/// flow, where to restart should an operator delete the durable (its ack
/// floor + 1): at once from what startup learnt of the durable, then once a
/// second, or less often where asking costs the server more
/// ([`RESUME_POINT_COST`]). A note that is late only means more
/// redeliveries after such a deletion, never a message skipped. Asking
/// takes a round trip, which the pull loop does not wait for. `None` for
/// a work-queue handler, whose stream keeps what was not consumed.
pub(super) fn note_resume_points(
    shared: &Arc<Shared>,
    consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if shared.binding.def.kind != Kind::Subscribe {
        return None;
    }
    // The server starts a durable's ack floor just below its first
    // sequence (0 on an empty stream, or for `deliver = "all"`), so floor
    // + 1 is where it has acked nothing yet, from the first moment: a
    // durable deleted before any note is recreated there, not at its
    // deliver policy, which for "new" would skip what came meanwhile.
    let floor = consumer.cached_info().ack_floor.stream_sequence;
    shared.resume_from.store(floor + 1, Ordering::Relaxed);
    let shared = shared.clone();
    Some(tokio::spawn(async move {
        // By name: it still answers for a durable recreated under it.
        let mut consumer = consumer;
        let mut noted_at = shared.counters.received.load(Ordering::Relaxed);
        let mut pause = RESUME_POINT_EVERY;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            let received = shared.counters.received.load(Ordering::Relaxed);
            if received == noted_at {
                continue;
            }
            noted_at = received;
            let asked = tokio::time::Instant::now();
            if let Ok(info) = consumer.info().await {
                let next = info.ack_floor.stream_sequence + 1;
                shared.resume_from.store(next, Ordering::Relaxed);
            }
            pause = RESUME_POINT_EVERY.max(asked.elapsed() * RESUME_POINT_COST);
        }
    }))
}

/// After a failed pull: wait `pause` (cancellably), then make sure the
/// durable exists again; an operator may have deleted it.
pub(super) async fn recover(
    shared: &Shared,
    consumer: &mut jetstream::consumer::PullConsumer,
    stop: &CancellationToken,
    pause: Duration,
    error: &PullError,
) {
    let b = &shared.binding;
    tracing::warn!(handler = b.def.name, durable = %b.route.durable, %error, "pull failed; retrying");
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(pause) => {}
    }
    let resume = match shared.resume_from.load(Ordering::Relaxed) {
        0 => None,
        seq => Some(seq),
    };
    match consumers::ensure_consumer_resuming(&shared.js, b, resume).await {
        Ok(c) => *consumer = c,
        Err(e) => {
            tracing::warn!(handler = b.def.name, error = %e, "cannot restore the durable yet")
        }
    }
}
