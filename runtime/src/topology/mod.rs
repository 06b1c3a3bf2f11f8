//! Streams and durable consumers: what a set of handlers needs on the
//! server, bound or created before anything is consumed. Names come from
//! one place (the naming functions re-exported here, for users and tests).
//!
//! | what | subject | stream | durable |
//! |---|---|---|---|
//! | `#[subscribe("orders.created")]` in app `billing` | `orders.created` | `ORDERS` (captures `orders.>`) | `billing-on_order` |
//! | `#[queue("queue.email")]` | `queue.email` | `QUEUE` (work queue, `queue.>`) | `queue_email` |
//! | dead letters | `dlq.<subject>` | `DLQ` (`dlq.>`) | — |
//! | delivery records | key-value bucket `JETWIRE_RUNS` | `KV_JETWIRE_RUNS` | — |
//! | the worker directory | key-value bucket `JETWIRE_WORKERS` | `KV_JETWIRE_WORKERS` | — |
//! | checkpoints (made on first use) | key-value bucket `JETWIRE_CHECKPOINTS` | `KV_JETWIRE_CHECKPOINTS` | — |
//! | signals (made on first use) | key-value bucket `JETWIRE_SIGNALS` | `KV_JETWIRE_SIGNALS` | — |
//! | streamed output (made on first use) | key-value bucket `JETWIRE_OUTPUT` | `KV_JETWIRE_OUTPUT` | — |
//!
//! With a subject prefix `p`, subjects become `p.orders.created`, streams
//! `P_ORDERS`, `P_QUEUE`, `P_DLQ`, and durables `p_billing-on_order`.

use std::sync::Arc;

use async_nats::jetstream;

use crate::config::{Config, Provision};
use crate::dlq;
use crate::error::Error;
use crate::handler::registry::HandlerDef;
use crate::names;
use crate::protocol::pull::HandBacks;
use crate::protocol::runs::Runs;
use crate::protocol::version;

pub(crate) mod consumers;
pub(crate) mod partitions;
mod provision;
mod status;
pub(crate) mod streams;

pub use crate::names::{
    default_stream, default_stream_subjects, dlq_stream, durable_for, queue_stream, service_durable,
};
pub use crate::partition::{partition_durable, partition_of, partition_subject};
pub(crate) use consumers::Binding;
pub use provision::Permissions;
pub(crate) use provision::{Place, permissions};
pub use status::{ConsumerStatus, LetterCounts, Status, StreamStatus, status};

/// Fails naming the handler when one needs more than the server offers:
/// a singleton needs consumer priority groups, from NATS 2.11 on.
pub(crate) fn check_server(version: &str, handlers: &[&'static HandlerDef]) -> Result<(), Error> {
    let Some(def) = handlers.iter().find(|d| d.singleton()) else {
        return Ok(());
    };
    if has_priority_groups(version) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "handler `{}` has `singleton = true`, which needs NATS 2.11 or later (consumer priority groups with a pinned client); this server runs {version}: upgrade it, or remove `singleton`",
        def.path()
    )))
}

/// Whether a server of `version` (`2.12.8`) has consumer priority groups.
fn has_priority_groups(version: &str) -> bool {
    version::at_least(version, (2, 11))
}

/// Binds or creates every stream and durable the handlers need, the
/// dead-letter stream, and the bucket of delivery records. Fails before
/// anything is consumed.
pub(crate) async fn ensure_all(
    js: &jetstream::Context,
    config: &Config,
    handlers: &[&'static HandlerDef],
) -> Result<Vec<(Binding, jetstream::consumer::PullConsumer)>, Error> {
    if config.provision == Provision::Bind {
        provision::check_bound(js, config, handlers).await?;
    }
    if handlers.is_empty() {
        dlq::stream::ensure(js, config).await?;
        return Ok(Vec::new());
    }
    // Outputs go where a stream keeps them, from the first call on.
    let outputs: Vec<&str> = handlers.iter().filter_map(|d| d.options.output).collect();
    let output_streams = async {
        if !outputs.is_empty() {
            streams::ensure_for_subjects(js, config, &outputs).await?;
        }
        Ok::<_, Error>(())
    };
    let runs = Runs::ensure(
        js,
        (
            config.prefix(),
            config.kv_put_prefix(&names::runs_bucket(config.prefix())),
        ),
        config.provision == Provision::Create,
        (config.replicas(), config.storage()),
    );
    // Each is a stream of its own (on a cluster, a group of its own to
    // elect): made at once, not one after another.
    let ((), (), runs) = tokio::try_join!(dlq::stream::ensure(js, config), output_streams, runs)?;
    let runs = Arc::new(runs);
    let mut bindings = Vec::with_capacity(handlers.len());
    for def in handlers {
        let (stream, settings) = streams::ensure_stream(js, config, def).await?;
        partitions::fit_stream(js, config, def, &stream, &settings).await?;
        let durable = def.durable(config.prefix(), &config.app);
        let route = def.route(stream.into(), durable.into());
        let binding = Binding {
            def,
            consumer: consumers::consumer_config(config, def, &route.durable),
            handbacks: HandBacks {
                runs: runs.clone(),
                stream: route.stream.clone(),
                durable: route.durable.clone(),
            },
            provision: if def.binds() {
                Provision::Bind
            } else {
                config.provision
            },
            partition: None,
            route,
        };
        let parts = partitions::bindings(config, &binding);
        for b in std::iter::once(&binding).chain(&parts) {
            check_durable(b)?;
        }
        let consumer = consumers::ensure_consumer(js, &binding).await?;
        bindings.push((binding, consumer));
        for part in parts {
            let consumer = consumers::ensure_consumer(js, &part).await?;
            bindings.push((part, consumer));
        }
    }
    let mut streams: Vec<String> = bindings
        .iter()
        .map(|(b, _)| b.route.stream.to_string())
        .chain([crate::names::dlq_stream(config.prefix())])
        .collect();
    streams.sort_unstable();
    streams.dedup();
    report_settings(js, config, &streams).await;
    Ok(bindings)
}

/// Every durable jetwire makes, a group's and a partition's included,
/// must be a name the advisory reader takes back (at most 64 characters):
/// else a message the server gives up on would never be dead-lettered.
fn check_durable(binding: &Binding) -> Result<(), Error> {
    let durable = &*binding.route.durable;
    jetwire_grammar::name::check(durable, jetwire_grammar::name::Kind::Durable).map_err(|e| {
        Error::Config(format!(
            "handler `{}`: {e}; its durable is made of the subject prefix, JETWIRE_APP, the handler's name, and its group and partition where it has them: shorten one of them",
            binding.def.path()
        ))
    })
}

/// Warns about each stream whose settings are weaker than the config asks
/// (see [`crate::StreamSettings`]); changes nothing.
async fn report_settings(js: &jetstream::Context, config: &Config, streams: &[String]) {
    for name in streams {
        let Ok(stream) = js.get_stream(name).await else {
            continue;
        };
        let asked = config.settings_for(name);
        let short = crate::config::shortfalls(&stream.cached_info().config, &asked);
        if !short.is_empty() {
            tracing::warn!(
                stream = %name,
                shortfalls = %short.join("; "),
                "the stream exists with weaker settings than asked; jetwire does not change an existing stream: edit it (`nats stream edit`) if the config is right"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How versions compare is `protocol::version`'s (tested there); this
    /// is which version priority groups come with.
    #[test]
    fn priority_groups_come_with_nats_2_11() {
        assert!(has_priority_groups("2.11.0"));
        assert!(!has_priority_groups("2.10.24"));
    }
}
