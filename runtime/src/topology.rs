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

use jetwire_grammar::subject::{DLQ_TOKEN, QUEUE_TOKEN};

use crate::registry::{HandlerDef, Kind};

/// A prefix as used in stream and durable names: dots become `_`.
fn name_prefix(prefix: Option<&str>) -> Option<String> {
    prefix.filter(|p| !p.is_empty()).map(|p| p.replace('.', "_"))
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
    durable_for(prefix, app, def.kind, def.name, def.subject, def.options.durable)
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
        .map(|c| if jetwire_grammar::subject::is_token_char(c) { c } else { '-' })
        .collect();
    if s.is_empty() { "app".to_owned() } else { s }
}
