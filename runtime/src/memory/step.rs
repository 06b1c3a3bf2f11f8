//! One delivery of a message to one handler, in memory: the call, its
//! classification and its settlement, by the rules the live loop follows.
//! `TestApp` repeats it at once with virtual waits; an app on `memory://`
//! delivers again after the real delay.

use std::sync::Arc;
use std::time::SystemTime;

use crate::classify::{Counted, Outcome, Settlement, classify, counted, settlement_after};
use crate::dlq::letter::{self, Failed};
use crate::handler::context::{Context, Env, Meta, Origin, Route};
use crate::handler::invoke::invoke;
use crate::handler::middleware::Middlewares;
use crate::handler::registry::HandlerDef;
use crate::policy::runs::{self, Count, Record};
use crate::protocol::reply::Delivered;
use crate::publish::message::Outbound;

/// What every delivery to one handler shares.
pub(crate) struct Lane {
    pub(crate) def: &'static HandlerDef,
    pub(crate) route: Route,
    pub(crate) env: Arc<Env>,
    pub(crate) middlewares: Arc<Middlewares>,
}

impl Lane {
    /// The lane of `def` in the app named `app`.
    pub(crate) fn new(
        def: &'static HandlerDef,
        app: &str,
        env: Arc<Env>,
        middlewares: Arc<Middlewares>,
    ) -> Lane {
        let route = def.route(def.stream(None).into(), def.durable(None, app).into());
        Lane {
            def,
            route,
            env,
            middlewares,
        }
    }
}

/// One message as a handler's durable holds it: what each delivery of it
/// shares, and the record of its hand-backs.
#[derive(Clone)]
pub(crate) struct Held {
    pub(crate) msg: Arc<Outbound>,
    /// The subject it is delivered on (its partition's, if partitioned).
    pub(crate) subject: String,
    pub(crate) sequence: u64,
    /// When it was stored: every delivery of it has the same time.
    pub(crate) published_at: SystemTime,
    /// The deliveries so far.
    pub(crate) deliveries: u32,
    /// The delivery record the live loop keeps: in memory only pauses
    /// hand a delivery back.
    pub(crate) record: Record,
}

/// What one delivery came to.
pub(crate) struct Step {
    /// Which run of its handler it was.
    pub(crate) attempt: u32,
    pub(crate) outcome: Outcome,
    /// Why it failed: a pause or a continuation says why, and is no
    /// failure.
    pub(crate) failure: Option<String>,
    /// Why the next step could not be published, for a continuation.
    pub(crate) unpublished: Option<String>,
    pub(crate) plan: Settlement,
    /// The dead letter to store, built.
    pub(crate) letter: Option<Outbound>,
}

/// Delivers `held` once more to `lane`'s handler and settles the call:
/// `held` is left as its next delivery would find it. `now` stamps a
/// dead letter.
pub(crate) async fn deliver(
    lane: &Lane,
    held: &mut Held,
    now: impl FnOnce() -> SystemTime,
) -> Step {
    let def = lane.def;
    held.deliveries += 1;
    let delivered = Delivered {
        deliveries: held.deliveries,
        stream_sequence: held.sequence,
        published_at: held.published_at,
    };
    let meta = Meta::new(
        &lane.route,
        held.subject.as_str().into(),
        None,
        held.msg.headers.clone(),
        Origin::Known(delivered),
    );
    let ctx = Context::new(meta, lane.env.clone());
    let attempt = match runs::count(held.deliveries, held.record, ctx.max_deliver()) {
        Count::Run { attempt } => attempt,
        Count::Exhausted => ctx.max_deliver(),
    };
    ctx.meta().count_attempt(attempt);
    if def.acks_first() {
        ctx.acked_first();
    }
    let called = invoke(
        def,
        &lane.middlewares,
        held.msg.payload.clone(),
        ctx.clone(),
    )
    .await;
    let failure = called
        .error
        .clone()
        .filter(|_| !matches!(called.outcome, Outcome::Pause(_) | Outcome::Continue));
    let outcome = counted(called.outcome, runs::may_pause(held.record));
    let action = classify(&outcome, attempt, &def.policy());
    let acked = ctx.acked_by(def.acks_first());
    let plan = settlement_after(action, def.reads_dead_letters(), acked);
    let letter = plan.letter.map(|reason| {
        let error = called.error.as_deref().unwrap_or_default();
        let failed = Failed::delivery(ctx.meta(), held.msg.payload.clone(), reason, error, now());
        letter::letter(failed)
    });
    let mut unpublished = None;
    match plan.counted {
        Counted::Paused => held.record = held.record.handed_back(),
        // Stored before the ack, as live.
        Counted::Continued => {
            if let Some(next) = &called.next
                && let Err(e) = ctx.publish_next(next).await
            {
                unpublished = Some(e.to_string());
            }
        }
        _ => {}
    }
    ctx.clear_kept(plan.kept).await;
    ctx.end_output(plan.leaves).await;
    Step {
        attempt,
        outcome: called.outcome,
        failure,
        unpublished,
        plan,
        letter,
    }
}
