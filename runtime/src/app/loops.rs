//! Each binding's loop, spawned: a handler's own durable always, a
//! partition's while this replica owns it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_nats::jetstream;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;
use crate::config::Config;
use crate::consume::{self, Counters, Shared, partitioned};
use crate::handler::context::Env;
use crate::handler::middleware::Middlewares;
use crate::handler::registry::HandlerDef;
use crate::publish::outlet::JetStreamOutlet;
use crate::topology;

/// What every loop of a started app shares.
pub(super) struct Loops {
    pub(super) client: Arc<async_nats::Client>,
    pub(super) reconnects: tokio::sync::watch::Receiver<()>,
    pub(super) js: jetstream::Context,
    pub(super) outlet: JetStreamOutlet,
    pub(super) calls: Arc<Env>,
    pub(super) middlewares: Arc<Middlewares>,
    pub(super) config: Arc<Config>,
    pub(super) stop: CancellationToken,
    pub(super) abort: CancellationToken,
}

/// One handler's entry in the app's stats: its durable and counters.
pub(super) type Stat = (&'static HandlerDef, String, Arc<Counters>);

impl Loops {
    /// Spawns every binding's loop into `tasks`. A handler's partitions
    /// count with its own durable. `instance` is this replica's id in the
    /// worker directory, which decides the partitions it reads.
    pub(super) fn spawn(
        &self,
        tasks: &mut Tasks,
        bindings: Vec<(topology::Binding, jetstream::consumer::PullConsumer)>,
        instance: &str,
    ) -> Vec<Stat> {
        let members = bindings
            .iter()
            .any(|(b, _)| b.partition.is_some())
            .then(|| {
                let mut names: Vec<partitioned::Reads> = bindings
                    .iter()
                    .map(|(b, _)| partitioned::Reads {
                        handler: b.def.name.to_owned(),
                        subject: b.def.subject.to_owned(),
                    })
                    .collect();
                names.dedup();
                partitioned::watch_members(
                    self.js.clone(),
                    &self.config,
                    instance.to_owned(),
                    names,
                    self.stop.clone(),
                )
            });
        let mut stats: Vec<Stat> = Vec::with_capacity(bindings.len());
        let mut counted: HashMap<&'static str, Arc<Counters>> = HashMap::new();
        for (binding, consumer) in bindings {
            let partition = binding.partition;
            let counters = match counted.get(binding.def.name) {
                Some(counters) if partition.is_some() => counters.clone(),
                _ => {
                    log_consuming(&binding);
                    let counters = Arc::new(Counters::new(binding.def.name));
                    stats.push((
                        binding.def,
                        binding.route.durable.to_string(),
                        counters.clone(),
                    ));
                    counted.insert(binding.def.name, counters.clone());
                    counters
                }
            };
            let begun = binding
                .handbacks
                .runs
                .begun(&binding.route.stream, &binding.route.durable);
            let shared = Arc::new(Shared {
                begun,
                client: self.client.clone(),
                reconnects: self.reconnects.clone(),
                resume_from: AtomicU64::new(0),
                binding,
                js: self.js.clone(),
                outlet: self.outlet.clone(),
                calls: self.calls.clone(),
                middlewares: self.middlewares.clone(),
                config: self.config.clone(),
                counters,
            });
            let (stop, abort) = (self.stop.clone(), self.abort.clone());
            let name = match partition {
                Some(i) => format!(
                    "the loop of handler `{}`, partition {i}",
                    shared.binding.def.path()
                ),
                None => format!("the loop of handler `{}`", shared.binding.def.path()),
            };
            match (&members, partition) {
                (Some(members), Some(_)) => tasks.spawn(
                    name,
                    partitioned::run(shared, consumer, stop, abort, members.clone()).map(Ok),
                ),
                _ => tasks.spawn(
                    name,
                    consume::run(shared, consumer, stop, abort).map(|_| Ok(())),
                ),
            };
        }
        stats
    }
}

/// Logs a handler's binding and options as its loop starts.
fn log_consuming(binding: &topology::Binding) {
    tracing::info!(
        handler = %binding.def.path(),
        subject = binding.def.subject,
        stream = %binding.route.stream,
        durable = %binding.route.durable,
        max_deliver = binding.def.max_deliver(),
        backoff = ?binding.def.backoff(),
        ack_wait = ?binding.def.ack_wait(),
        concurrency = binding.def.concurrency(),
        partitions = binding.def.partitions(),
        timeout = ?binding.def.options.timeout,
        "consuming"
    );
}
