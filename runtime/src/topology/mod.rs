//! Streams and durable consumers: what a set of handlers needs on the
//! server, bound or created before anything is consumed. Names come from
//! one place (the naming functions re-exported here, for users and tests).
//!
//! | what | subject | stream | durable |
//! |---|---|---|---|
//! | `#[subscribe("orders.created")]` in app `billing` | `orders.created` | `ORDERS` (captures `orders.>`) | `billing-on_order` |
//! | `#[queue("queue.email")]` | `queue.email` | `QUEUE` (work queue, `queue.>`) | `queue_email` |
//! | dead letters | `dlq.<subject>` | `DLQ` (`dlq.>`) | — |
//!
//! With a subject prefix `p`, subjects become `p.orders.created`, streams
//! `P_ORDERS`, `P_QUEUE`, `P_DLQ`, and durables `p_billing-on_order`.

use async_nats::jetstream;

use crate::config::Config;
use crate::dlq;
use crate::error::Error;
use crate::handler::registry::HandlerDef;

pub(crate) mod consumers;
pub(crate) mod streams;

pub use crate::names::{
    default_stream, default_stream_subjects, dlq_stream, durable_for, queue_stream,
};
pub(crate) use consumers::Binding;

/// Binds or creates every stream and durable the handlers need, and the
/// dead-letter stream; returns each binding with its durable, ready to pull.
/// Fails before anything is consumed.
pub(crate) async fn ensure_all(
    js: &jetstream::Context,
    config: &Config,
    handlers: &[&'static HandlerDef],
) -> Result<Vec<(Binding, jetstream::consumer::PullConsumer)>, Error> {
    dlq::stream::ensure(js, config).await?;
    let mut bindings = Vec::with_capacity(handlers.len());
    for def in handlers {
        let stream = streams::ensure_stream(js, config, def).await?;
        let durable = def.durable(config.prefix(), &config.app);
        let binding = Binding {
            def,
            consumer: consumers::consumer_config(config, def, &durable),
            route: def.route(stream.into(), durable.into()),
        };
        let consumer = consumers::ensure_consumer(js, &binding).await?;
        bindings.push((binding, consumer));
    }
    Ok(bindings)
}
