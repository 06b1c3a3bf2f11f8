//! A partitioned handler on the server: the stream records the subject's
//! partition count (for publishers), captures the partition subjects, and
//! holds one pinned durable per partition that delivers a message at a
//! time (see [`crate::partition`]).

use async_nats::jetstream::{self, consumer::pull};
use jetwire_grammar::subject::{self, with_prefix};

use crate::config::{Config, Provision};
use crate::error::Error;
use crate::handler::registry::HandlerDef;
use crate::partition::{self, METADATA_PREFIX};
use crate::topology::consumers::{self, Binding};

/// Makes stream `stream` fit `def`: a partitioned handler's partition
/// subjects are captured and its partition count recorded (written under
/// `create`; the same count, if recorded already). An unpartitioned
/// handler must not read a subject that is partitioned, whose keyed
/// messages it would never see.
pub(crate) async fn fit_stream(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
    stream: &str,
    settings: &jetstream::stream::Config,
) -> Result<(), Error> {
    let subject = with_prefix(config.prefix(), def.subject);
    let Some(n) = def.partitions() else {
        return check_unpartitioned(def, stream, &subject, settings);
    };
    let first = partition::partition_subject(&subject, 0);
    if !settings
        .subjects
        .iter()
        .any(|s| subject::overlaps(s, &first))
    {
        return Err(Error::Stream {
            stream: stream.to_owned(),
            reason: format!(
                "does not capture `{first}` and the other partition subjects of handler `{}` (`partitions = {n}`): add `{subject}.*` to the stream's subjects",
                def.path()
            ),
        });
    }
    let key = partition::metadata_key(&subject);
    match settings.metadata.get(&key) {
        Some(have) if have.parse() == Ok(n) => Ok(()),
        Some(have) => Err(Error::Config(format!(
            "handler `{}` has `partitions = {n}`, but stream `{stream}` records `{subject}` in {have} partitions (metadata `{key}`): keyed messages already wait in those. Set `partitions = {have}`, or let the stream's backlog drain and change the metadata (`nats stream edit`)",
            def.path()
        ))),
        None if config.provision == Provision::Bind => Err(Error::Stream {
            stream: stream.to_owned(),
            reason: format!(
                "JETWIRE_PROVISION=bind, and the stream lacks metadata `{key}` = `{n}`, which tells publishers that handler `{}` reads `{subject}` in {n} partitions: add it (`nats stream edit`), or let jetwire (JETWIRE_PROVISION=create)",
                def.path()
            ),
        }),
        None => {
            let mut wanted = settings.clone();
            wanted.metadata.insert(key, n.to_string());
            js.update_stream(wanted).await.map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: format!("cannot record `{subject}` as partitioned in {n}: {e}"),
            })?;
            tracing::info!(
                stream,
                subject,
                partitions = n,
                "recorded the subject as partitioned"
            );
            Ok(())
        }
    }
}

fn check_unpartitioned(
    def: &HandlerDef,
    stream: &str,
    subject: &str,
    config: &jetstream::stream::Config,
) -> Result<(), Error> {
    for (key, n) in &config.metadata {
        let Some(pattern) = key.strip_prefix(METADATA_PREFIX) else {
            continue;
        };
        let partitioned = partition::partition_subject(pattern, 0);
        if subject::overlaps(subject, pattern) && !subject::overlaps(subject, &partitioned) {
            return Err(Error::Config(format!(
                "handler `{}` reads `{subject}`, which stream `{stream}` records as partitioned in {n} (metadata `{key}`): keyed messages go to `{pattern}._p<i>`, and this handler would miss them. Add `partitions = {n}` to it",
                def.path()
            )));
        }
    }
    Ok(())
}

/// The bindings of a partitioned handler's partitions, beside `base`, the
/// binding of its own durable (which reads messages without a key).
pub(crate) fn bindings(config: &Config, base: &Binding) -> Vec<Binding> {
    let Some(n) = base.def.partitions() else {
        return Vec::new();
    };
    (0..n)
        .map(|index| {
            let durable = partition::partition_durable(&base.route.durable, index);
            let route = base
                .def
                .route(base.route.stream.clone(), durable.as_str().into());
            let mut handbacks = base.handbacks.clone();
            handbacks.durable = route.durable.clone();
            Binding {
                def: base.def,
                consumer: consumer_config(config, base.def, &durable, index),
                handbacks,
                provision: base.provision,
                partition: Some(index),
                route,
            }
        })
        .collect()
}

/// Partition `index`'s durable: its partition subject, one message in
/// flight (so one key's messages are handled in order, retries
/// included), and one pinned replica at a time.
pub(crate) fn consumer_config(
    config: &Config,
    def: &HandlerDef,
    durable: &str,
    index: u32,
) -> pull::Config {
    let base = consumers::consumer_config(config, def, durable);
    pull::Config {
        // As every jetwire durable's, `jetwire: <path> ..`: the advisory
        // reader finds the handler by it.
        description: Some(format!(
            "jetwire: {} in app {}, partition {index}",
            def.path(),
            config.app
        )),
        filter_subject: partition::partition_subject(&base.filter_subject, index),
        max_ack_pending: 1,
        ..consumers::pinned(def.ack_wait(), base)
    }
}
