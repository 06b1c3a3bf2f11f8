//! A pulled message as a delivery: its context, its span, and its call
//! once started.

use tokio::sync::OwnedSemaphorePermit;

use crate::config::TraceContext;
use crate::consume::Shared;
use crate::handler::context::{Context, Meta, Origin};
use crate::handler::invoke::{Call, Called};
use crate::observe::metrics::CallTimer;
use crate::observe::trace;
use crate::protocol::reply;

/// The context of one delivery, and its payload; `None` (and logged) for a
/// message without a JetStream reply subject, which is left to `ack_wait`.
pub(super) fn open(shared: &Shared, msg: async_nats::Message) -> Option<(Context, bytes::Bytes)> {
    let async_nats::Message {
        subject,
        reply,
        payload,
        headers,
        ..
    } = msg;
    let Some(reply) = reply.filter(|r| reply::is_jetstream(r)) else {
        tracing::error!(
            handler = shared.binding.def.name,
            "delivery without a JetStream reply subject; leaving it to ack_wait"
        );
        return None;
    };
    let meta = Meta::new(
        &shared.binding.route,
        subject,
        shared.config.prefix(),
        headers.unwrap_or_default(),
        Origin::Reply(reply),
    );
    let ctx = Context::new(meta, shared.calls.clone());
    Some((ctx, payload))
}

/// The span every delivery runs in. Its fields that cost a parse of the
/// reply subject or an allocation (sequence, delivery, message id) are
/// recorded only when a subscriber takes the span: a disabled span costs
/// nothing per message, even where tracing's `log` feature (which sqlx
/// turns on) would otherwise evaluate every field for a logger.
pub(super) fn span_for(shared: &Shared, ctx: &Context) -> tracing::Span {
    use tracing::field::Empty;
    let meta = ctx.meta();
    #[cfg(not(feature = "otel"))]
    let (span, id_field) = (
        tracing::info_span!(
            "jetwire.handle",
            handler = meta.handler,
            subject = meta.subject(),
            stream = &*meta.stream,
            sequence = Empty,
            delivery = Empty,
            message_id = Empty,
        ),
        "message_id",
    );
    // With OpenTelemetry, the messaging conventions' names take the place
    // of `subject` and `message_id`: a consumer span named `process
    // <subject>`. Each string field costs the layer an allocation per
    // message, so none is recorded twice.
    #[cfg(feature = "otel")]
    let (span, id_field) = (
        tracing::info_span!(
            "jetwire.handle",
            handler = meta.handler,
            stream = &*meta.stream,
            sequence = Empty,
            delivery = Empty,
            otel.name = format_args!("process {}", meta.subject()),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = meta.subject(),
            messaging.message.id = Empty,
            messaging.consumer.group.name = &*meta.durable,
        ),
        "messaging.message.id",
    );
    if span.is_disabled() {
        return span;
    }
    let delivered = meta.delivered();
    span.record("sequence", delivered.stream_sequence);
    span.record("delivery", delivered.deliveries);
    span.record(id_field, meta.message_id());
    let link = shared.config.trace_context == TraceContext::Link;
    trace::continue_trace(&span, ctx.headers(), link);
    span
}

/// A call started while holding a slot, as its first poll left it.
pub(super) enum Started {
    /// Waiting on something; timed until settled.
    Running(OwnedSemaphorePermit, Call, CallTimer),
    /// Done.
    Finished(OwnedSemaphorePermit, Called),
}

impl Started {
    /// Starts `def`'s call on a delivery and polls it once.
    pub(super) fn call(
        slot: OwnedSemaphorePermit,
        shared: &Shared,
        payload: bytes::Bytes,
        ctx: Context,
    ) -> Started {
        let timer = shared.counters.metrics.call();
        let def = shared.binding.def;
        let mut call = Call::start(def, &shared.middlewares, payload, ctx);
        match call.now() {
            Some(called) => Started::Finished(slot, called),
            None => Started::Running(slot, call, timer),
        }
    }
}
