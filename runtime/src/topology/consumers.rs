//! Streams and durable consumers: their names, derived in this one place.
//!
//! | what | subject | stream | durable |
//! |---|---|---|---|
//! | `#[subscribe("orders.created")]` in app `billing` | `orders.created` | `ORDERS` (captures `orders.>`) | `billing-on_order` |
//! | `#[queue("queue.email")]` | `queue.email` | `QUEUE` (work queue, `queue.>`) | `queue_email` |
//! | dead letters | `dlq.<subject>` | `DLQ` (`dlq.>`) | — |
//!
//! With a subject prefix `p`, subjects become `p.orders.created`, streams
//! `P_ORDERS`, `P_QUEUE`, `P_DLQ`, and durables `p_billing-on_order`.

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    stream::{self, RetentionPolicy, StorageType},
};
use jetwire_grammar::subject::{self, DLQ_TOKEN, QUEUE_TOKEN, with_prefix};

use crate::config::Config;
use crate::error::Error;
use crate::registry::{Deliver, HandlerDef, Kind};

/// A prefix as used in stream and durable names: dots become `_`.
fn name_prefix(prefix: Option<&str>) -> Option<String> {
    prefix
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('.', "_"))
}

/// The stream jetwire creates for `subject` when none captures it.
///
/// ```
/// use jetwire::topology::default_stream;
///
/// assert_eq!(default_stream(None, "orders.created"), "ORDERS");
/// assert_eq!(default_stream(Some("t1"), "queue.email"), "T1_QUEUE");
/// ```
pub fn default_stream(prefix: Option<&str>, subject: &str) -> String {
    let first = subject.split('.').next().unwrap_or(subject).to_uppercase();
    match name_prefix(prefix) {
        Some(p) => format!("{}_{first}", p.to_uppercase()),
        None => first,
    }
}

/// The subjects the default stream for `subject` captures, unprefixed:
/// `<first token>.>`.
///
/// ```
/// assert_eq!(jetwire::topology::default_stream_subjects("orders.created"), "orders.>");
/// ```
pub fn default_stream_subjects(subject: &str) -> String {
    format!("{}.>", subject.split('.').next().unwrap_or(subject))
}

/// The work-queue stream's name.
pub fn queue_stream(prefix: Option<&str>) -> String {
    default_stream(prefix, QUEUE_TOKEN)
}

/// The dead-letter stream's name.
pub fn dlq_stream(prefix: Option<&str>) -> String {
    default_stream(prefix, DLQ_TOKEN)
}

/// The durable consumer name of a handler in `app`: `<app>-<fn name>` for
/// events (or the `durable` option), the subject with `.` as `_`, `*` as
/// `any` and `>` as `all` for work queues.
///
/// ```
/// use jetwire::topology::durable_for;
/// use jetwire::__private::Kind;
///
/// assert_eq!(durable_for(None, "billing", Kind::Subscribe, "on_order", "orders.created", None), "billing-on_order");
/// assert_eq!(durable_for(Some("t1"), "billing", Kind::Queue, "send", "queue.email.*", None), "t1_queue_email_any");
/// ```
pub fn durable_for(
    prefix: Option<&str>,
    app: &str,
    kind: Kind,
    fn_name: &str,
    subject: &str,
    explicit: Option<&str>,
) -> String {
    let base = match (kind, explicit) {
        (Kind::Subscribe, Some(name)) => name.to_owned(),
        (Kind::Subscribe, None) => format!("{app}-{fn_name}"),
        (Kind::Queue, _) => subject
            .split('.')
            .map(|t| match t {
                "*" => "any",
                ">" => "all",
                t => t,
            })
            .collect::<Vec<_>>()
            .join("_"),
    };
    match name_prefix(prefix) {
        Some(p) => format!("{p}_{base}"),
        None => base,
    }
}

/// [`durable_for`] of a registered handler.
pub(crate) fn durable_name(prefix: Option<&str>, app: &str, def: &HandlerDef) -> String {
    durable_for(
        prefix,
        app,
        def.kind,
        def.name,
        def.subject,
        def.options.durable,
    )
}

/// The stream a handler binds to by default: the `stream` option, else the
/// default stream for its subject.
pub(crate) fn stream_name(prefix: Option<&str>, def: &HandlerDef) -> String {
    match (def.options.stream, def.kind) {
        (Some(s), _) => s.to_owned(),
        (None, Kind::Queue) => queue_stream(prefix),
        (None, Kind::Subscribe) => default_stream(prefix, def.subject),
    }
}

/// A name for the app when none is configured: the binary's file name, made
/// fit for a durable name.
pub(crate) fn sanitize_app(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if jetwire_grammar::subject::is_token_char(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() { "app".to_owned() } else { s }
}

/// One handler bound to its stream and durable.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) def: &'static HandlerDef,
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) consumer: pull::Config,
}

/// How many replicas of an app `max_ack_pending` leaves room for at full speed.
const REPLICAS_AT_FULL_SPEED: i64 = 4;

/// `max_ack_pending` for a handler: 1 keeps a `concurrency = 1` handler in
/// order across replicas; otherwise what four replicas may hold at once,
/// so the server never holds back a pull the loop asked for.
pub(crate) fn max_ack_pending(concurrency: u32) -> i64 {
    if concurrency <= 1 {
        1
    } else {
        let per_process = crate::consume::held_at_most(concurrency as usize) as i64;
        per_process * REPLICAS_AT_FULL_SPEED
    }
}

/// The durable consumer config for a handler. Never sets the consumer's
/// `backoff`: it applies only to ack timeouts and replaces `ack_wait`.
pub(crate) fn consumer_config(config: &Config, def: &HandlerDef, durable: &str) -> pull::Config {
    let deliver_policy = match (def.kind, def.deliver()) {
        (Kind::Subscribe, Deliver::New) => DeliverPolicy::New,
        _ => DeliverPolicy::All,
    };
    pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some(format!("jetwire: {} in app {}", def.path(), config.app)),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: def.ack_wait(),
        max_deliver: i64::from(def.max_deliver()),
        filter_subject: with_prefix(config.prefix(), def.subject),
        max_ack_pending: max_ack_pending(def.concurrency()),
        ..Default::default()
    }
}

fn nats_err(context: String) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Error {
    move |source| Error::Nats { context, source }
}

/// Binds or creates every stream and durable the handlers need, and the
/// dead-letter stream; returns each binding with its durable, ready to pull.
/// Fails before anything is consumed.
pub(crate) async fn ensure_all(
    js: &jetstream::Context,
    config: &Config,
    handlers: &[&'static HandlerDef],
) -> Result<Vec<(Binding, jetstream::consumer::PullConsumer)>, Error> {
    ensure_dlq(js, config).await?;
    let mut bindings = Vec::with_capacity(handlers.len());
    for def in handlers {
        let stream = ensure_stream(js, config, def).await?;
        let durable = durable_name(config.prefix(), &config.app, def);
        let binding = Binding {
            def,
            consumer: consumer_config(config, def, &durable),
            stream,
            durable,
        };
        let consumer = ensure_consumer(js, &binding).await?;
        bindings.push((binding, consumer));
    }
    Ok(bindings)
}

fn stream_config(
    config: &Config,
    name: String,
    subjects: String,
    retention: RetentionPolicy,
) -> stream::Config {
    stream::Config {
        name,
        subjects: vec![subjects],
        retention,
        storage: StorageType::File,
        num_replicas: config.stream_replicas,
        description: Some("created by jetwire".to_owned()),
        ..Default::default()
    }
}

/// The dead-letter stream: `DLQ` on `dlq.>`, limits retention.
pub(crate) async fn ensure_dlq(js: &jetstream::Context, config: &Config) -> Result<(), Error> {
    let name = dlq_stream(config.prefix());
    let subjects = with_prefix(config.prefix(), &format!("{DLQ_TOKEN}.>"));
    let cfg = stream_config(
        config,
        name.clone(),
        subjects.clone(),
        RetentionPolicy::Limits,
    );
    let stream = js
        .get_or_create_stream(cfg)
        .await
        .map_err(|e| Error::Stream {
            stream: name.clone(),
            reason: format!("cannot create the dead-letter stream on `{subjects}`: {e}"),
        })?;
    if !stream
        .cached_info()
        .config
        .subjects
        .iter()
        .any(|s| s == &subjects)
    {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "exists but does not capture `{subjects}`; jetwire keeps dead letters there: add the subject to the stream or delete it"
            ),
        });
    }
    Ok(())
}

/// The stream for one handler: the `stream` option, else the stream that
/// already captures the subject, else a new default stream.
async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
) -> Result<String, Error> {
    let prefix = config.prefix();
    let subject = with_prefix(prefix, def.subject);
    let (name, stream) = if let Some(name) = def.options.stream {
        let stream = js.get_stream(name).await.map_err(|e| Error::Stream {
            stream: name.to_owned(),
            reason: format!(
                "handler `{}` binds to it with `stream = \"{name}\"`, but it cannot be read: {e}; create the stream or remove the option",
                def.path()
            ),
        })?;
        (name.to_owned(), stream)
    } else {
        match js.stream_by_subject(subject.clone()).await {
            Ok(name) => {
                let stream = js.get_stream(&name).await.map_err(|e| Error::Stream {
                    stream: name.clone(),
                    reason: format!("captures `{subject}` but cannot be read: {e}"),
                })?;
                (name, stream)
            }
            Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
                create_default_stream(js, config, def).await?
            }
            Err(e) => {
                return Err(nats_err(format!("looking up the stream of `{subject}`"))(
                    Box::new(e),
                ));
            }
        }
    };
    let info = stream.cached_info();
    if !info
        .config
        .subjects
        .iter()
        .any(|s| subject::overlaps(s, &subject))
    {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "does not capture `{subject}`, which handler `{}` reads: add the subject to the stream or bind another with `stream = ..`",
                def.path()
            ),
        });
    }
    if def.kind == Kind::Subscribe && info.config.retention == RetentionPolicy::WorkQueue {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "captures `{subject}` with retention=workqueue, so only one consumer may read it; event handler `{}` needs limits or interest retention: bind another stream with `stream = ..`, or change the stream",
                def.path()
            ),
        });
    }
    Ok(name)
}

async fn create_default_stream(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
) -> Result<(String, jetstream::stream::Stream), Error> {
    let prefix = config.prefix();
    let (name, retention) = match def.kind {
        Kind::Queue => (queue_stream(prefix), RetentionPolicy::WorkQueue),
        Kind::Subscribe => (default_stream(prefix, def.subject), RetentionPolicy::Limits),
    };
    let subjects = with_prefix(prefix, &default_stream_subjects(def.subject));
    let cfg = stream_config(config, name.clone(), subjects.clone(), retention);
    let stream = js.get_or_create_stream(cfg).await.map_err(|e| Error::Stream {
        stream: name.clone(),
        reason: format!(
            "cannot create it capturing `{subjects}` for handler `{}`: {e}; if another stream captures some of these subjects, bind it with `stream = \"..\"`",
            def.path()
        ),
    })?;
    Ok((name, stream))
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
        durable: b.durable.clone(),
        handler: b.def.path(),
        reason,
    };
    let stream = js
        .get_stream_no_info(&b.stream)
        .await
        .map_err(|e| consumer_err(format!("cannot open stream `{}`: {e}", b.stream)))?;
    match stream.consumer_info(&b.durable).await {
        Ok(info) => {
            let have = &info.config;
            let filters: Vec<&str> = std::iter::once(have.filter_subject.as_str())
                .chain(have.filter_subjects.iter().map(String::as_str))
                .filter(|s| !s.is_empty())
                .collect();
            if filters != [b.consumer.filter_subject.as_str()] {
                return Err(consumer_err(format!(
                    "exists on stream `{}` reading {filters:?}, but this handler reads `{}`; another handler or app owns the name: set `durable = \"..\"`, or delete the old consumer",
                    b.stream, b.consumer.filter_subject
                )));
            }
            let want = &b.consumer;
            if have.ack_wait != want.ack_wait
                || have.max_deliver != want.max_deliver
                || have.max_ack_pending != want.max_ack_pending
                || !have.backoff.is_empty()
                || have.ack_policy != want.ack_policy
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
                    durable = %b.durable,
                    handler = %b.def.path(),
                    ack_wait = ?want.ack_wait,
                    max_deliver = want.max_deliver,
                    max_ack_pending = want.max_ack_pending,
                    "updated durable consumer to the handler's options"
                );
                return Ok(consumer);
            }
            if have.deliver_policy != b.consumer.deliver_policy {
                tracing::warn!(
                    durable = %b.durable,
                    "the durable exists with another deliver policy, which cannot change; delete it to apply `deliver`"
                );
            }
            stream
                .get_consumer(&b.durable)
                .await
                .map_err(|e| consumer_err(format!("cannot open it: {e}")))
        }
        Err(_) => {
            let mut config = b.consumer.clone();
            if let Some(start_sequence) = resume {
                tracing::warn!(durable = %b.durable, start_sequence, "durable missing; recreating it where it left off");
                config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence };
            }
            stream.create_consumer(config).await.map_err(|e| {
            let text = e.to_string();
            let hint = if text.contains("unique") || text.contains("overlap") {
                "; a work-queue stream allows one consumer per subject, and another consumer already reads an overlapping subject"
            } else {
                ""
            };
            consumer_err(format!("cannot create it on stream `{}`: {text}{hint}", b.stream))
            })
        }
    }
}
