//! The pull loop of one handler: pull ahead in batches, run each call
//! (with automatic progress), then carry out what [`classify`] decides:
//! ack, nak with delay, or dead-letter then term.
//!
//! - [`run`] (here): the outer loop, which starts a stretch of pulling
//!   and recovers when one fails.
//! - `puller`: one stretch: drain the backlog, then wait for messages.
//! - `settle`: a delivery from its call to its ack, nak or dead letter.
//! - `tally`: which run of its handler a delivery is, hand-backs aside.
//! - `events`: the durable's advisories the loop acts on.
//! - `resume`: where a deleted durable is recreated, and recovering.
//!
//! Memory is bounded by `concurrency`: a process holds at most
//! [`Sizing::held_at_most`] messages of a handler, however long the backlog.
//!
//! [`classify`]: crate::classify::classify

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::classify::DlqReason;
use crate::config::Config;
use crate::handler::context::Env;
use crate::handler::middleware::Middlewares;
use crate::observe::metrics::{HandlerMetrics, Settled};
use crate::policy::Sizing;
use crate::protocol::begun::Begun;
use crate::protocol::pull::Pull;
use crate::publish::outlet::JetStreamOutlet;
use crate::topology::Binding;

mod delivery;
mod events;
#[cfg(feature = "metrics")]
mod lag;
pub(crate) mod partitioned;
mod puller;
mod resume;
mod settle;
mod tally;

use puller::{Ended, Puller};

/// Counters of one handler's outcomes in this process, what `metrics`
/// records of them, and whether its loop is consuming.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) paused: AtomicU64,
    pub(crate) continued: AtomicU64,
    pub(crate) interrupted: AtomicU64,
    /// Calls that failed after their message was acknowledged.
    pub(crate) failed_after_ack: AtomicU64,
    /// The same events, and each call's duration, for the `metrics`
    /// recorder (nothing without the feature).
    pub(crate) metrics: HandlerMetrics,
    /// The loop is pulling: readiness reads it.
    pub(crate) consuming: Arc<AtomicBool>,
}

impl Counters {
    pub(crate) fn new(handler: &'static str) -> Counters {
        Counters {
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            continued: AtomicU64::new(0),
            interrupted: AtomicU64::new(0),
            failed_after_ack: AtomicU64::new(0),
            metrics: HandlerMetrics::new(handler),
            consuming: Arc::new(AtomicBool::new(false)),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self) {
        Counters::count(&self.received);
        self.metrics.received();
    }

    pub(crate) fn acked(&self) {
        Counters::count(&self.acked);
        self.metrics.settled(Settled::Ack);
    }

    pub(crate) fn retried(&self) {
        Counters::count(&self.retried);
        self.metrics.settled(Settled::Nak);
    }

    pub(crate) fn dead_lettered(&self, reason: DlqReason) {
        Counters::count(&self.dead_lettered);
        self.metrics.dead_lettered(reason.as_str());
    }

    pub(crate) fn discarded(&self) {
        Counters::count(&self.discarded);
        self.metrics.settled(Settled::Discard);
    }

    pub(crate) fn paused(&self) {
        Counters::count(&self.paused);
        self.metrics.settled(Settled::Pause);
    }

    pub(crate) fn continued(&self) {
        Counters::count(&self.continued);
        self.metrics.settled(Settled::Continue);
    }

    pub(crate) fn interrupted(&self) {
        Counters::count(&self.interrupted);
    }

    pub(crate) fn failed_after_ack(&self) {
        Counters::count(&self.failed_after_ack);
        self.metrics.settled(Settled::FailedAfterAck);
    }

    /// The loop heard from the server, or lost it.
    pub(crate) fn consuming(&self, yes: bool) {
        if self.consuming.load(Ordering::Relaxed) != yes {
            self.consuming.store(yes, Ordering::Relaxed);
        }
    }
}

/// What one handler's loop and every one of its deliveries share.
pub(crate) struct Shared {
    pub(crate) binding: Binding,
    /// Where the loop marks the last runs it begins.
    pub(crate) begun: Begun,
    /// Pulls, acks and advisories go through it; shared by every delivery.
    pub(crate) client: Arc<async_nats::Client>,
    /// Changes when the client connects again: a waiting pull is gone.
    pub(crate) reconnects: tokio::sync::watch::Receiver<()>,
    /// For an event durable: the stream sequence to start from if it must be
    /// recreated (its last known ack floor + 1); 0 for a work queue, whose
    /// stream keeps what was not consumed.
    pub(crate) resume_from: AtomicU64,
    pub(crate) js: jetstream::Context,
    /// Where dead letters go, waiting for the server's ack.
    pub(crate) outlet: JetStreamOutlet,
    /// What every call's context shares: state, the outlet, the acking
    /// client, the drain signal, the checkpoint store.
    pub(crate) calls: Arc<Env>,
    /// Each handler's middleware.
    pub(crate) middlewares: Arc<Middlewares>,
    /// The app's config: the subject prefix, and how to make the
    /// dead-letter stream again should it be deleted.
    pub(crate) config: Arc<Config>,
    pub(crate) counters: Arc<Counters>,
}

impl Shared {
    /// The loop's sizes, from the handler's `concurrency`.
    pub(crate) fn sizing(&self) -> Sizing {
        Sizing::of(self.binding.concurrency())
    }
}

/// Runs until `stop` fires, then waits for its in-flight calls. Calls still
/// running when `abort` fires are interrupted and their messages nak'ed.
/// Whether a pinned loop held the server's pin when it ended.
///
/// The loop pulls on a subscription of its own ([`Pull`]). Each stretch of
/// pulling first drains whatever backlog there is with no-wait fetches,
/// then keeps pull requests waiting at the server, asking for the next
/// batch while the last is being worked, until a failure, a reconnect or
/// a leader change ends the stretch. A failure closes the subscription
/// (handing back what arrived), pauses, and makes sure the durable exists
/// before the next stretch.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
    abort: CancellationToken,
) -> bool {
    let noting = resume::note_resume_points(&shared, consumer.clone(), stop.clone());
    // A partitioned handler's gauges are sampled by its own durable's loop.
    #[cfg(feature = "metrics")]
    let sampling = shared
        .binding
        .partition
        .is_none()
        .then(|| lag::sample(&shared, consumer.clone(), stop.clone()));
    let mut puller = Puller::new(shared, stop.clone(), abort).await;
    // The inbox the loop pulls on: each drain fetch opens one of its own
    // and the waiting pull keeps the last.
    let mut subscription: Option<Pull> = None;
    while !stop.is_cancelled() {
        match puller.stretch(&mut subscription).await {
            Ended::Stopped => break,
            Ended::Again => {}
            Ended::Away => {
                if let Some(old) = subscription.take() {
                    old.abandon().await;
                }
            }
            Ended::Failed(error) => {
                puller.shared.counters.consuming(false);
                // A pull the server no longer knows of (its durable
                // deleted in a race, say) is replaced on a fresh inbox,
                // once the durable is there again.
                if let Some(old) = subscription.take() {
                    old.close().await;
                }
                let pause = puller.pause.after_failure();
                resume::recover(&puller.shared, &mut consumer, &stop, pause, &error).await;
            }
        }
    }
    if let Some(noting) = noting {
        noting.abort();
    }
    #[cfg(feature = "metrics")]
    if let Some(sampling) = sampling {
        sampling.abort();
    }
    // Before waiting for the calls in flight: an interrupted call's nak
    // must not go back to a request still waiting on this inbox.
    if let Some(pull) = subscription.take() {
        pull.close().await;
    }
    let pinned = puller.pinned();
    puller.finish().await;
    pinned
}
