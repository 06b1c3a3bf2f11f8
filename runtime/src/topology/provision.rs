//! Provisioning under the operator's control: with `JETWIRE_PROVISION=bind`
//! jetwire creates nothing, and startup lists everything missing at once,
//! with the NATS permissions the app needs ([`Permissions`]).

use std::fmt;

use async_nats::jetstream;
use jetwire_grammar::subject::with_prefix;

use crate::config::{Config, Provision};
use crate::error::Error;
use crate::handler::registry::{HandlerDef, Kind};
use crate::names;
use crate::partition;
use crate::topology::consumers;

/// The NATS permissions an app needs: subjects it publishes to (JetStream
/// API calls among them) and subscribes to. `Display` writes them as a
/// nats-server `permissions` block.
///
/// Subjects the handlers publish to themselves (`ctx.publish`) are not in
/// the list: jetwire cannot know them; add them.
///
/// ```no_run
/// # async fn demo() -> Result<(), jetwire::Error> {
/// let app = jetwire::App::new(jetwire::Config::from_env()?);
/// println!("{}", app.permissions());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Permissions {
    /// Subjects to allow publishing to.
    pub publish: Vec<String>,
    /// Subjects to allow subscribing to.
    pub subscribe: Vec<String>,
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, subjects: &[String]| {
            writeln!(f, "  {name}: [")?;
            for s in subjects {
                writeln!(f, "    \"{s}\"")?;
            }
            writeln!(f, "  ]")
        };
        writeln!(f, "permissions {{")?;
        writeln!(
            f,
            "  # and every subject the handlers publish to themselves"
        )?;
        list(f, "publish", &self.publish)?;
        list(f, "subscribe", &self.subscribe)?;
        write!(f, "}}")
    }
}

/// One handler's place on the server, for the permissions it needs.
pub(crate) struct Place {
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) work_queue: bool,
    /// A partitioned handler's partition count: a durable per partition.
    pub(crate) partitions: Option<u32>,
}

impl Place {
    /// Where `def` lives when nothing else is bound: its `stream` option
    /// or jetwire's default stream.
    pub(crate) fn default_of(config: &Config, def: &HandlerDef) -> Place {
        let prefix = config.prefix();
        let stream = match (def.options.stream, def.kind) {
            (Some(name), _) => name.to_owned(),
            (None, Kind::Queue) => names::queue_stream(prefix),
            (None, Kind::Subscribe) => names::default_stream(prefix, def.subject),
        };
        Place {
            stream,
            durable: def.durable(prefix, &config.app),
            work_queue: def.kind == Kind::Queue,
            partitions: def.partitions(),
        }
    }
}

/// The permissions of an app whose handlers live at `places`.
pub(crate) fn permissions(config: &Config, places: &[Place]) -> Permissions {
    let prefix = config.prefix();
    let api = config.jetstream_api();
    let create = config.provision == Provision::Create;
    let dlq = names::dlq_stream(prefix);
    let advisories = names::advisory_stream(prefix);
    let kv = format!("KV_{}", names::runs_bucket(prefix));
    let workers = names::workers_bucket(prefix);
    let workers_kv = format!("KV_{workers}");
    let mut publish = vec![
        format!("{api}.STREAM.NAMES"),
        names::dlq_stream_subjects(prefix),
    ];
    let mut subscribe = vec!["_INBOX.>".to_owned()];
    let mut streams: Vec<&str> = vec![&dlq, &workers_kv];
    // The worker directory: writing and removing this instance's record.
    publish.push(format!("{}>", config.kv_put_prefix(&workers)));
    let kept = [
        names::checkpoints_bucket(prefix),
        names::signals_bucket(prefix),
        names::output_bucket(prefix),
    ];
    let kept_kv = kept.clone().map(|b| format!("KV_{b}"));
    if !places.is_empty() {
        streams.extend([advisories.as_str(), kv.as_str()]);
        // Checkpoints, signals and streamed output, for handlers that use
        // them: saving,
        // reading, and watching a key (an ordered consumer on its stream).
        for (bucket, stream) in kept.iter().zip(&kept_kv) {
            streams.push(stream);
            publish.extend([
                format!("{}>", config.kv_put_prefix(bucket)),
                format!("{api}.DIRECT.GET.{stream}.>"),
                format!("{api}.STREAM.MSG.GET.{stream}"),
                format!("{api}.CONSUMER.CREATE.{stream}.>"),
            ]);
        }
    }
    let mut durables: Vec<(&str, String)> = Vec::new();
    for p in places {
        streams.push(&p.stream);
        durables.push((&p.stream, p.durable.clone()));
        publish.push(format!("{api}.STREAM.MSG.GET.{}", p.stream));
        if p.work_queue {
            publish.push(format!("{api}.STREAM.MSG.DELETE.{}", p.stream));
        }
        for event in ["LEADER_ELECTED", "DELETED"] {
            subscribe.push(names::consumer_advisory(event, &p.stream, &p.durable));
        }
        // A partition per durable, whose pin a replica releases when the
        // partition moves; and the stream records the partition count.
        for i in 0..p.partitions.unwrap_or(0) {
            let d = partition::partition_durable(&p.durable, i);
            publish.push(format!("{api}.CONSUMER.UNPIN.{}.{d}", p.stream));
            for event in ["LEADER_ELECTED", "DELETED"] {
                subscribe.push(names::consumer_advisory(event, &p.stream, &d));
            }
            durables.push((&p.stream, d));
        }
        if create && p.partitions.is_some() {
            publish.push(format!("{api}.STREAM.UPDATE.{}", p.stream));
            // The lock held while the count is recorded.
            let locks = names::locks_bucket(prefix);
            publish.push(format!("{}>", config.kv_put_prefix(&locks)));
            publish.push(format!("{api}.STREAM.INFO.KV_{locks}"));
            publish.push(format!("{api}.STREAM.CREATE.KV_{locks}"));
        }
    }
    if !places.is_empty() {
        durables.push((&advisories, names::advisory_durable(prefix)));
        let bucket = names::runs_bucket(prefix);
        publish.extend([
            format!("{}>", config.kv_put_prefix(&bucket)),
            format!("{api}.DIRECT.GET.{kv}.>"),
            format!("{api}.STREAM.MSG.GET.{kv}"),
            format!("{api}.STREAM.PURGE.{kv}"),
        ]);
    }
    streams.sort_unstable();
    streams.dedup();
    for s in &streams {
        publish.push(format!("{api}.STREAM.INFO.{s}"));
        if create {
            publish.push(format!("{api}.STREAM.CREATE.{s}"));
        }
    }
    if create && !places.is_empty() {
        // The delivery-record bucket too: an older jetwire's is raised.
        publish.push(format!("{api}.STREAM.UPDATE.{advisories}"));
        publish.push(format!("{api}.STREAM.UPDATE.{kv}"));
    }
    for (s, d) in &durables {
        publish.extend([
            format!("{api}.CONSUMER.INFO.{s}.{d}"),
            format!("{api}.CONSUMER.MSG.NEXT.{s}.{d}"),
            format!("$JS.ACK.{s}.{d}.>"),
        ]);
        if create {
            publish.extend([
                format!("{api}.CONSUMER.CREATE.{s}.{d}"),
                format!("{api}.CONSUMER.CREATE.{s}.{d}.>"),
                format!("{api}.CONSUMER.DURABLE.CREATE.{s}.{d}"),
            ]);
        }
    }
    publish.sort_unstable();
    publish.dedup();
    subscribe.sort_unstable();
    subscribe.dedup();
    Permissions { publish, subscribe }
}

/// Under `bind`: everything the handlers need that the server lacks, all
/// at once, with the permissions the app needs. Creates nothing.
pub(crate) async fn check_bound(
    js: &jetstream::Context,
    config: &Config,
    handlers: &[&'static HandlerDef],
) -> Result<(), Error> {
    let prefix = config.prefix();
    let mut missing = Vec::new();
    let mut places = Vec::new();
    let dlq = names::dlq_stream(prefix);
    if !stream_exists(js, &dlq).await? {
        missing.push(format!(
            "stream `{dlq}` capturing `{}` (dead letters; limits retention)",
            names::dlq_stream_subjects(prefix)
        ));
    }
    for def in handlers {
        let mut place = Place::default_of(config, def);
        let subject = with_prefix(prefix, def.subject);
        let found = match def.options.stream {
            Some(name) => stream_exists(js, name).await?.then(|| name.to_owned()),
            None => js.stream_by_subject(subject.clone()).await.ok(),
        };
        let Some(stream) = found else {
            let retention = match def.kind {
                Kind::Queue => "workqueue",
                Kind::Subscribe => "limits",
            };
            missing.push(format!(
                "stream `{}` capturing `{}` ({retention} retention), for handler `{}`",
                place.stream,
                with_prefix(prefix, &names::default_stream_subjects(def.subject)),
                def.path()
            ));
            missing.push(durable_wanted(config, def, &place));
            places.push(place);
            continue;
        };
        place.stream = stream;
        let have = js
            .get_stream_no_info(&place.stream)
            .await
            .map_err(|e| Error::nats(format!("opening stream `{}`", place.stream), e))?;
        if have.consumer_info(&place.durable).await.is_err() {
            missing.push(durable_wanted(config, def, &place));
        }
        for i in 0..def.partitions().unwrap_or(0) {
            let durable = partition::partition_durable(&place.durable, i);
            if have.consumer_info(&durable).await.is_err() {
                let c = super::partitions::consumer_config(config, def, &durable, i);
                missing.push(format!(
                    "durable `{durable}` on stream `{}` for partition {i} of handler `{}`: pull, filter `{}`, ack explicit, ack_wait {:?}, max_ack_pending 1, priority group `{}` pinned_client",
                    place.stream,
                    def.path(),
                    c.filter_subject,
                    c.ack_wait,
                    crate::protocol::pull::PIN_GROUP
                ));
            }
        }
        places.push(place);
    }
    if !handlers.is_empty() {
        check_own(js, config, &places, &mut missing).await?;
    }
    let workers = names::workers_bucket(prefix);
    if js.get_key_value(&workers).await.is_err() {
        missing.push(format!(
            "key-value bucket `{workers}` (history 1, max age {:?}): the worker directory",
            config.worker_ttl
        ));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::NotProvisioned {
        missing,
        permissions: permissions(config, &places).to_string(),
    })
}

/// The advisory capture and the bucket of delivery records.
async fn check_own(
    js: &jetstream::Context,
    config: &Config,
    places: &[Place],
    missing: &mut Vec<String>,
) -> Result<(), Error> {
    let prefix = config.prefix();
    let advisories = names::advisory_stream(prefix);
    let mut wanted: Vec<String> = places
        .iter()
        .map(|p| names::max_deliveries_of(&p.stream))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    match js.get_stream(&advisories).await {
        Ok(stream) => {
            let have = &stream.cached_info().config.subjects;
            let lacking: Vec<&String> = wanted.iter().filter(|w| !have.contains(w)).collect();
            if !lacking.is_empty() {
                missing.push(format!(
                    "subjects {lacking:?} on stream `{advisories}` (max-deliveries advisories, dead-lettered when a process died on a message's last delivery)"
                ));
            }
            let durable = names::advisory_durable(prefix);
            if stream.consumer_info(&durable).await.is_err() {
                missing.push(format!(
                    "durable `{durable}` on stream `{advisories}` (pull, ack explicit)"
                ));
            }
        }
        Err(_) => missing.push(format!(
            "stream `{advisories}` capturing {wanted:?} (workqueue retention), and its durable `{}`",
            names::advisory_durable(prefix)
        )),
    }
    let bucket = names::runs_bucket(prefix);
    if js.get_key_value(&bucket).await.is_err() {
        missing.push(format!(
            "key-value bucket `{bucket}` (history 1, max age 7d, max value size {}): records of deliveries handed back unrun and of last runs begun",
            crate::protocol::runs::RECORD_SIZE
        ));
    }
    Ok(())
}

fn durable_wanted(config: &Config, def: &HandlerDef, place: &Place) -> String {
    let c = consumers::consumer_config(config, def, &place.durable);
    format!(
        "durable `{}` on stream `{}` for handler `{}`: pull, filter `{}`, ack explicit, ack_wait {:?}, max_deliver {}, max_ack_pending {}, deliver {:?}",
        place.durable,
        place.stream,
        def.path(),
        c.filter_subject,
        c.ack_wait,
        c.max_deliver,
        c.max_ack_pending,
        c.deliver_policy
    )
}

async fn stream_exists(js: &jetstream::Context, name: &str) -> Result<bool, Error> {
    use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
    match js.get_stream(name).await {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::nats(format!("looking up stream `{name}`"), e)),
    }
}
