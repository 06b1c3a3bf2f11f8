//! A pulled message as a delivery: its context, its span, and its call
//! once started.

use tokio::sync::OwnedSemaphorePermit;

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

/// The span every delivery runs in; its fields are computed only when a
/// subscriber wants it.
pub(super) fn span_for(ctx: &Context) -> tracing::Span {
    let meta = ctx.meta();
    #[cfg(not(feature = "otel"))]
    let span = tracing::info_span!(
        "jetwire.handle",
        handler = meta.handler,
        subject = meta.subject(),
        stream = &*meta.stream,
        sequence = meta.delivered().stream_sequence,
        delivery = meta.delivered().deliveries,
        message_id = meta.message_id(),
    );
    // With OpenTelemetry, the messaging conventions' names take the place
    // of `subject` and `message_id`: a consumer span named `process
    // <subject>`. Each string field costs the layer an allocation per
    // message, so none is recorded twice.
    #[cfg(feature = "otel")]
    let span = tracing::info_span!(
        "jetwire.handle",
        handler = meta.handler,
        stream = &*meta.stream,
        sequence = meta.delivered().stream_sequence,
        delivery = meta.delivered().deliveries,
        otel.name = format!("process {}", meta.subject()),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = meta.subject(),
        messaging.message.id = meta.message_id(),
        messaging.consumer.group.name = &*meta.durable,
    );
    trace::continue_trace(&span, ctx.headers());
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
