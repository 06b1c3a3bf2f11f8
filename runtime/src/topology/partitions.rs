//! A partitioned handler on the server: the stream records the subject's
//! partition count (for publishers), captures the partition subjects, and
//! holds one pinned durable per partition that delivers a message at a
//! time (see [`crate::partition`]).

use async_nats::jetstream::{self, consumer::pull};
use jetwire_grammar::subject::{self, with_prefix};

use crate::config::{Config, Provision};
use crate::error::Error;
use crate::handler::registry::HandlerDef;
use crate::names::{self, Owner};
use crate::partition::{self, METADATA_PREFIX};
use crate::protocol::lock::Lock;
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
    check_overlapping_counts(def, stream, &subject, n, &settings.metadata)?;
    check_other_readers(js, config, def, stream, &subject, n).await?;
    match settings.metadata.get(&key) {
        Some(have) if have.parse() == Ok(n) => Ok(()),
        Some(have) => Err(count_differs(def, stream, &subject, n, have)),
        None if config.provision == Provision::Bind => Err(Error::Stream {
            stream: stream.to_owned(),
            reason: format!(
                "JETWIRE_PROVISION=bind, and the stream lacks metadata `{key}` = `{n}`, which tells publishers that handler `{}` reads `{subject}` in {n} partitions: add it (`nats stream edit`), or let jetwire (JETWIRE_PROVISION=create)",
                def.path()
            ),
        }),
        None => {
            // One app at a time writes the stream's config: another
            // writing a stale copy at the same moment would drop this
            // entry after it was read back.
            let bucket = names::locks_bucket(config.prefix());
            let settings_of = (config.replicas(), config.storage());
            let lock = Lock::take(js, &bucket, settings_of, &format!("stream-{stream}")).await?;
            let fresh = match js.get_stream(stream).await {
                Ok(mut s) => s.info().await.map(|i| i.config.clone()).ok(),
                Err(_) => None,
            };
            let recorded = match fresh.as_ref().and_then(|c| c.metadata.get(&key)) {
                Some(have) if have.parse() == Ok(n) => Ok(()),
                Some(have) => Err(count_differs(def, stream, &subject, n, have)),
                None => {
                    let fresh = fresh.unwrap_or_else(|| settings.clone());
                    record(js, def, stream, &subject, n, fresh).await
                }
            };
            lock.release().await;
            recorded
        }
    }
}

/// The error of a handler whose count differs from the one the stream
/// records for its subject.
fn count_differs(def: &HandlerDef, stream: &str, subject: &str, n: u32, have: &str) -> Error {
    let key = partition::metadata_key(subject);
    Error::Config(format!(
        "handler `{}` has `partitions = {n}`, but stream `{stream}` records `{subject}` in {have} partitions (metadata `{key}`): keyed messages already wait in those. Set `partitions = {have}`, or stop the keyed publishers, let the stream's backlog drain, change the metadata (`nats stream edit`) and wait 5 s (publishers keep the count that long) before publishing again",
        def.path()
    ))
}

/// Records `subject` as partitioned in `n` in the stream's metadata. The
/// update writes a whole config: another app recording another subject at
/// the same moment could write over this entry, or this over its; so the
/// entry is read back, and written again on a fresh config until it holds.
async fn record(
    js: &jetstream::Context,
    def: &HandlerDef,
    stream: &str,
    subject: &str,
    n: u32,
    mut settings: jetstream::stream::Config,
) -> Result<(), Error> {
    let key = partition::metadata_key(subject);
    let failed = |why: String| Error::Stream {
        stream: stream.to_owned(),
        reason: format!("cannot record `{subject}` as partitioned in {n}: {why}"),
    };
    for _ in 0..RECORD_TRIES {
        check_overlapping_counts(def, stream, subject, n, &settings.metadata)?;
        settings.metadata.insert(key.clone(), n.to_string());
        js.update_stream(settings)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut info = js
            .get_stream(stream)
            .await
            .map_err(|e| failed(e.to_string()))?;
        settings = info
            .info()
            .await
            .map_err(|e| failed(e.to_string()))?
            .config
            .clone();
        match settings.metadata.get(&key) {
            Some(have) if have.parse() == Ok(n) => {
                tracing::info!(
                    stream,
                    subject,
                    partitions = n,
                    "recorded the subject as partitioned"
                );
                return Ok(());
            }
            Some(have) => {
                return Err(Error::Config(format!(
                    "handler `{}` has `partitions = {n}`, but another app recorded `{subject}` in {have} partitions in stream `{stream}` as this one started: set `partitions = {have}`",
                    def.path()
                )));
            }
            None => continue,
        }
    }
    Err(failed(format!(
        "the entry was written over by other updates {RECORD_TRIES} times; start again"
    )))
}

/// How often recording a partition count is tried against concurrent
/// updates of the stream.
const RECORD_TRIES: usize = 8;

/// A subject matched by two recorded patterns with different counts would
/// be routed by whichever a publisher read first: refused.
fn check_overlapping_counts(
    def: &HandlerDef,
    stream: &str,
    subject: &str,
    n: u32,
    metadata: &std::collections::HashMap<String, String>,
) -> Result<(), Error> {
    for (key, have) in metadata {
        let Some(pattern) = key.strip_prefix(METADATA_PREFIX) else {
            continue;
        };
        if pattern != subject && subject::overlaps(pattern, subject) && have.parse() != Ok(n) {
            return Err(Error::Config(format!(
                "handler `{}` partitions `{subject}` in {n}, but stream `{stream}` records the overlapping `{pattern}` in {have} partitions (metadata `{key}`): a keyed message matching both would go to either. Use `partitions = {have}`, or subjects that do not overlap",
                def.path()
            )));
        }
    }
    Ok(())
}

/// Once `subject` is partitioned, its keyed messages go to partition
/// subjects: a consumer of the stream that reads `subject` but not those
/// (another app's unpartitioned handler, a durable made by hand) would
/// silently stop seeing them. So a partitioned handler does not start
/// while such a consumer exists; this app's own durable for `def` (which
/// reads the messages without a key) is not one.
async fn check_other_readers(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
    stream: &str,
    subject: &str,
    n: u32,
) -> Result<(), Error> {
    use futures_util::TryStreamExt;
    let own = def.durable(config.prefix(), &config.app);
    let partitioned = partition::partition_subject(subject, 0);
    let failed = |e: String| Error::Stream {
        stream: stream.to_owned(),
        reason: format!("cannot list its consumers: {e}"),
    };
    let consumers = js
        .get_stream(stream)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut infos = consumers.consumers();
    while let Some(info) = infos.try_next().await.map_err(|e| failed(e.to_string()))? {
        let name = info.config.durable_name.as_deref().unwrap_or(&info.name);
        if name == own || name.starts_with(&format!("{own}-p")) {
            continue;
        }
        let filters = consumer_filters(&info.config);
        let misses = filters
            .iter()
            .any(|f| subject::overlaps(f, subject) && !subject::overlaps(f, &partitioned));
        if misses {
            return Err(Error::Config(format!(
                "handler `{}` would partition `{subject}` in {n}, but consumer `{name}` of stream `{stream}` reads `{}` and not the partition subjects: it would stop seeing keyed messages. Give that handler `partitions = {n}` too (or a filter that takes `{subject}.*`), or remove the consumer (`nats consumer rm {stream} {name}`)",
                def.path(),
                filters.join(", ")
            )));
        }
    }
    Ok(())
}

/// The subjects a consumer reads: its filters, or everything.
fn consumer_filters(config: &jetstream::consumer::Config) -> Vec<String> {
    let mut filters = config.filter_subjects.clone();
    if !config.filter_subject.is_empty() {
        filters.push(config.filter_subject.clone());
    }
    if filters.is_empty() {
        filters.push(">".to_owned());
    }
    filters
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
    let owner = Owner {
        handler: def.path(),
        app: config.app.clone(),
        partition: Some(index),
    };
    pull::Config {
        description: Some(owner.description()),
        metadata: owner.metadata(),
        filter_subject: partition::partition_subject(&base.filter_subject, index),
        max_ack_pending: 1,
        ..consumers::pinned(def.ack_wait(), base)
    }
}
