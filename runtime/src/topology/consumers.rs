//! Durable consumers: one per handler, created or updated to the
//! handler's options, and recreated where a deleted one left off; or,
//! under `bind = true` or `JETWIRE_PROVISION=bind`, taken as the server
//! has them, each contradicted option reported.

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

    /// Why its durable is taken as the server has it, for messages.
    fn held_by(&self) -> &'static str {
        if self.def.binds() {
            "`bind = true`"
        } else {
            "JETWIRE_PROVISION=bind"
        }
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

/// Each option of the durable `have` that contradicts what the handler
/// would give it (`want`), worded for an operator.
fn contradictions(have: &jetstream::consumer::Config, want: &pull::Config) -> Vec<String> {
    let mut out = Vec::new();
    if have.ack_wait != want.ack_wait {
        out.push(format!(
            "its ack_wait is {:?}, the handler's {:?}",
            have.ack_wait, want.ack_wait
        ));
    }
    if have.max_deliver != want.max_deliver {
        out.push(format!(
            "its max_deliver is {}, where the handler's runs and hand-backs need {}",
            have.max_deliver, want.max_deliver
        ));
    }
    if have.max_ack_pending != -1 && have.max_ack_pending < want.max_ack_pending {
        out.push(format!(
            "its max_ack_pending is {}, below the {} the handler's concurrency keeps in flight",
            have.max_ack_pending, want.max_ack_pending
        ));
    }
    if !have.backoff.is_empty() {
        out.push(format!(
            "it has a backoff of {} delays, which replaces ack_wait after a timeout",
            have.backoff.len()
        ));
    }
    if have.deliver_policy != want.deliver_policy {
        out.push(format!(
            "it starts at {:?}, the handler's `deliver` at {:?}",
            have.deliver_policy, want.deliver_policy
        ));
    }
    if want.priority_policy == PriorityPolicy::PinnedClient
        && (have.priority_policy != PriorityPolicy::PinnedClient
            || !have.priority_groups.contains(&PIN_GROUP.to_owned()))
    {
        out.push(format!(
            "it has no pinned priority group `{PIN_GROUP}`, which `singleton = true` pulls from"
        ));
    }
    if Owner::read(&have.metadata) != Owner::read(&want.metadata) {
        let owner: Vec<String> = want
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push(format!(
            "it lacks the metadata naming its handler ({}), so a last delivery that is never answered is not dead-lettered; add it (`nats consumer edit`)",
            owner.join(", ")
        ));
    }
    out
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
            if !create {
                if have.ack_policy != AckPolicy::Explicit {
                    return Err(consumer_err(format!(
                        "{}: it acknowledges {:?}, and a handler needs explicit acks; set its ack policy to explicit (`nats consumer edit`), or let jetwire make its own durable",
                        b.held_by(),
                        have.ack_policy
                    )));
                }
                for contradiction in contradictions(have, want) {
                    tracing::warn!(
                        durable = %b.route.durable,
                        handler = %b.def.path(),
                        "{}: {contradiction}; left as it is",
                        b.held_by()
                    );
                }
            } else if have.deliver_policy != want.deliver_policy {
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
            "{}, and it cannot be read on stream `{}`: {e}; create it, or {}",
            b.held_by(),
            b.route.stream,
            if b.def.binds() {
                "remove `bind = true` to let jetwire make it"
            } else {
                "let jetwire make it (JETWIRE_PROVISION=create)"
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_contradicted_option_is_named_once() {
        let want = pull::Config {
            ack_wait: Duration::from_secs(30),
            max_deliver: 25,
            max_ack_pending: 64,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        };
        let same = jetstream::consumer::Config {
            ack_wait: want.ack_wait,
            max_deliver: want.max_deliver,
            max_ack_pending: want.max_ack_pending,
            deliver_policy: want.deliver_policy,
            ..Default::default()
        };
        assert!(contradictions(&same, &want).is_empty());
        let have = jetstream::consumer::Config {
            ack_wait: Duration::from_secs(5),
            max_deliver: 3,
            max_ack_pending: 8,
            backoff: vec![Duration::from_secs(1)],
            deliver_policy: DeliverPolicy::New,
            ..same.clone()
        };
        let found = contradictions(&have, &want);
        for word in [
            "its ack_wait",
            "its max_deliver",
            "max_ack_pending",
            "backoff",
            "starts at",
        ] {
            assert_eq!(
                found.iter().filter(|c| c.contains(word)).count(),
                1,
                "{word} in {found:?}"
            );
        }
        assert_eq!(found.len(), 5, "{found:?}");
        let unlimited = jetstream::consumer::Config {
            max_ack_pending: -1,
            ..same.clone()
        };
        assert!(contradictions(&unlimited, &want).is_empty());
        let pinned = pinned(want.ack_wait, want.clone());
        assert_eq!(contradictions(&same, &pinned).len(), 1);
    }
}
