//! Durable consumers: one per handler, created or updated to the
//! handler's options, and recreated where a deleted one left off.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PriorityPolicy, pull},
};
use jetwire_grammar::subject::with_prefix;

use crate::config::{Config, Provision};
use crate::error::Error;
use crate::handler::context::Route;
use crate::handler::registry::{Deliver, HandlerDef, Kind};
use crate::names::Owner;
use crate::policy::{Sizing, runs};
use crate::protocol::pull::{HandBacks, PIN_GROUP};

/// One handler bound to its stream and durable.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) def: &'static HandlerDef,
    /// The handler with its stream and durable, as its deliveries name them.
    pub(crate) route: Route,
    pub(crate) consumer: pull::Config,
    /// Where its loop records the deliveries it hands back unrun.
    pub(crate) handbacks: HandBacks,
    /// Whether its durable may be created or updated.
    pub(crate) provision: Provision,
    /// The partition its durable reads, for a partitioned handler's
    /// partitions; `None` for a handler's own durable.
    pub(crate) partition: Option<u32>,
}

impl Binding {
    /// Whether one replica at a time consumes it (a singleton, a partition).
    pub(crate) fn pinned(&self) -> bool {
        self.def.singleton() || self.partition.is_some()
    }

    /// Calls in flight per process: one for a partition.
    pub(crate) fn concurrency(&self) -> u32 {
        match self.partition {
            Some(_) => 1,
            None => self.def.concurrency(),
        }
    }
}

/// The server's deliver policy for `deliver`. A time before the server's
/// range is the earliest it keeps.
fn deliver_policy(deliver: Deliver) -> DeliverPolicy {
    match deliver {
        Deliver::New => DeliverPolicy::New,
        Deliver::Last => DeliverPolicy::Last,
        Deliver::LastPerSubject => DeliverPolicy::LastPerSubject,
        Deliver::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        Deliver::Time {
            unix_seconds,
            nanos,
        } => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(unix_seconds) * 1_000_000_000 + i128::from(nanos),
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        },
        Deliver::All => DeliverPolicy::All,
    }
}

/// The durable consumer config for a handler. Never sets the consumer's
/// `backoff`: it applies only to ack timeouts and replaces `ack_wait`.
pub(crate) fn consumer_config(config: &Config, def: &HandlerDef, durable: &str) -> pull::Config {
    let deliver_policy = match def.kind {
        Kind::Subscribe => deliver_policy(def.deliver()),
        Kind::Queue => DeliverPolicy::All,
    };
    let owner = Owner {
        handler: def.path(),
        app: config.app.clone(),
        partition: None,
    };
    let consumer = pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some(owner.description()),
        metadata: owner.metadata(),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: def.ack_wait(),
        // Room for hand-backs, which the loop does not count as runs: it
        // enforces `max_deliver` itself (`policy::runs`).
        max_deliver: i64::from(runs::server_max_deliver(def.max_deliver())),
        filter_subject: with_prefix(config.prefix(), def.subject),
        max_ack_pending: Sizing::of(def.concurrency()).max_ack_pending(),
        ..Default::default()
    };
    match def.singleton() {
        true => pinned(def.ack_wait(), consumer),
        false => consumer,
    }
}

/// `consumer` with one pinned replica: the server delivers to the one it
/// pinned, and moves the pin when that one has not pulled for `ack_wait`.
pub(crate) fn pinned(ack_wait: Duration, consumer: pull::Config) -> pull::Config {
    pull::Config {
        priority_policy: PriorityPolicy::PinnedClient,
        priority_groups: vec![PIN_GROUP.to_owned()],
        priority_timeout: ack_wait,
        ..consumer
    }
}

/// Creates the durable, or updates it when the handler's options changed.
/// A durable that reads another subject is a conflict, not something to overwrite.
pub(crate) async fn ensure_consumer(
    js: &jetstream::Context,
    b: &Binding,
) -> Result<jetstream::consumer::Consumer<pull::Config>, Error> {
    ensure_consumer_resuming(js, b, None).await
}

/// [`ensure_consumer`]; a durable that has to be created anew starts at
/// stream sequence `resume` when given (where a deleted one left off),
/// instead of its deliver policy.
pub(crate) async fn ensure_consumer_resuming(
    js: &jetstream::Context,
    b: &Binding,
    resume: Option<u64>,
) -> Result<jetstream::consumer::Consumer<pull::Config>, Error> {
    let consumer_err = |reason: String| Error::Consumer {
        durable: b.route.durable.to_string(),
        handler: b.def.path(),
        reason,
    };
    let stream = js
        .get_stream_no_info(&b.route.stream)
        .await
        .map_err(|e| consumer_err(format!("cannot open stream `{}`: {e}", b.route.stream)))?;
    match stream.consumer_info(&*b.route.durable).await {
        Ok(info) => {
            let have = &info.config;
            let filters: Vec<&str> = std::iter::once(have.filter_subject.as_str())
                .chain(have.filter_subjects.iter().map(String::as_str))
                .filter(|s| !s.is_empty())
                .collect();
            if filters != [b.consumer.filter_subject.as_str()] {
                return Err(consumer_err(format!(
                    "exists on stream `{}` reading {filters:?}, but this handler reads `{}`; another handler or app owns the name: set `durable = \"..\"`, or delete the old consumer",
                    b.route.stream, b.consumer.filter_subject
                )));
            }
            let want = &b.consumer;
            let create = b.provision == Provision::Create;
            if create
                && (have.ack_wait != want.ack_wait
                    || have.max_deliver != want.max_deliver
                    || have.max_ack_pending != want.max_ack_pending
                    || !have.backoff.is_empty()
                    || have.ack_policy != want.ack_policy
                    || Owner::read(&have.metadata) != Owner::read(&want.metadata))
            {
                // The deliver policy of a durable cannot change; keep the server's.
                let update = pull::Config {
                    deliver_policy: have.deliver_policy,
                    ..want.clone()
                };
                let consumer = stream.update_consumer(update).await.map_err(|e| {
                    consumer_err(format!("cannot update it to the handler's options: {e}"))
                })?;
                tracing::info!(
                    durable = %b.route.durable,
                    handler = %b.def.path(),
                    ack_wait = ?want.ack_wait,
                    max_deliver = want.max_deliver,
                    max_ack_pending = want.max_ack_pending,
                    "updated durable consumer to the handler's options"
                );
                return Ok(consumer);
            }
            if !create && (have.ack_wait != want.ack_wait || have.max_deliver != want.max_deliver) {
                tracing::warn!(
                    durable = %b.route.durable,
                    have_ack_wait = ?have.ack_wait,
                    want_ack_wait = ?want.ack_wait,
                    have_max_deliver = have.max_deliver,
                    want_max_deliver = want.max_deliver,
                    "JETWIRE_PROVISION=bind: the durable's options differ from the handler's, and are left as they are"
                );
            }
            if !create && Owner::read(&have.metadata) != Owner::read(&want.metadata) {
                let owner: Vec<String> = want
                    .metadata
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                tracing::warn!(
                    durable = %b.route.durable,
                    "JETWIRE_PROVISION=bind: the durable lacks the metadata naming its handler ({}), so a last delivery that is never answered is not dead-lettered; add it (`nats consumer edit`)",
                    owner.join(", ")
                );
            }
            if have.deliver_policy != b.consumer.deliver_policy {
                tracing::warn!(
                    durable = %b.route.durable,
                    "the durable exists with another deliver policy, which cannot change; delete it to apply `deliver`"
                );
            }
            stream
                .get_consumer(&b.route.durable)
                .await
                .map_err(|e| consumer_err(format!("cannot open it: {e}")))
        }
        Err(e) if b.provision == Provision::Bind => Err(consumer_err(format!(
            "JETWIRE_PROVISION=bind, and it cannot be read on stream `{}`: {e}; create it, or let jetwire (JETWIRE_PROVISION=create)",
            b.route.stream
        ))),
        Err(_) => {
            let mut config = b.consumer.clone();
            if let Some(start_sequence) = resume {
                tracing::warn!(durable = %b.route.durable, start_sequence, "durable missing; recreating it where it left off");
                config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence };
            }
            stream.create_consumer(config).await.map_err(|e| {
            let text = e.to_string();
            let hint = if text.contains("unique") || text.contains("overlap") {
                "; a work-queue stream allows one consumer per subject, and another consumer already reads an overlapping subject"
            } else {
                ""
            };
            consumer_err(format!("cannot create it on stream `{}`: {text}{hint}", b.route.stream))
            })
        }
    }
}
