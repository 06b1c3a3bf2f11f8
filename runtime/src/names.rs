//! Every name jetwire derives, in this one place: streams, durables,
//! dead-letter subjects, and the JetStream API and advisory subjects it
//! talks to. Pure functions; the rest of the runtime calls them.
//!
//! | what | subject | stream | durable |
//! |---|---|---|---|
//! | `#[subscribe("orders.created")]` in app `billing` | `orders.created` | `ORDERS` (captures `orders.>`) | `billing-on_order` |
//! | `#[queue("queue.email")]` | `queue.email` | `QUEUE` (work queue, `queue.>`) | `queue_email` |
//! | dead letters | `dlq.<subject>` | `DLQ` (`dlq.>`) | — |
//! | max-deliveries advisories | `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.*` | `JETWIRE_ADVISORIES` | `jetwire-dead-letters` |
//!
//! With a subject prefix `p`, subjects become `p.orders.created`, streams
//! `P_ORDERS`, `P_QUEUE`, `P_DLQ`, and durables `p_billing-on_order`.

use jetwire_grammar::subject::{self, DLQ_TOKEN, QUEUE_TOKEN};

/// Which attribute declared a handler; it decides the handler's stream
/// and durable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `#[subscribe]`: an event handler; every app gets a copy.
    Subscribe,
    /// `#[queue]`: a work-queue handler; each job is done once.
    Queue,
}

/// A prefix as used in stream and durable names: dots become `_`.
fn name_prefix(prefix: Option<&str>) -> Option<String> {
    subject::set_prefix(prefix).map(|p| p.replace('.', "_"))
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

/// Stream `name` of the deployment with subject prefix `prefix`: `P_NAME`.
pub(crate) fn prefixed_stream(prefix: Option<&str>, name: &str) -> String {
    match name_prefix(prefix) {
        Some(p) => format!("{}_{name}", p.to_uppercase()),
        None => name.to_owned(),
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
///
/// ```
/// assert_eq!(jetwire::topology::queue_stream(Some("t1")), "T1_QUEUE");
/// ```
pub fn queue_stream(prefix: Option<&str>) -> String {
    default_stream(prefix, QUEUE_TOKEN)
}

/// The dead-letter stream's name.
///
/// ```
/// assert_eq!(jetwire::topology::dlq_stream(None), "DLQ");
/// ```
pub fn dlq_stream(prefix: Option<&str>) -> String {
    default_stream(prefix, DLQ_TOKEN)
}

/// The subjects the dead-letter stream captures, prefixed.
pub(crate) fn dlq_stream_subjects(prefix: Option<&str>) -> String {
    subject::with_prefix(prefix, &format!("{DLQ_TOKEN}.>"))
}

/// The subject a dead letter of `subject` goes to.
///
/// ```
/// assert_eq!(jetwire::dlq::subject_for("queue.email"), "dlq.queue.email");
/// ```
pub fn dlq_subject(subject: &str) -> String {
    format!("{DLQ_TOKEN}.{subject}")
}

/// The durable consumer name of a handler in `app`: `<app>-<fn name>` for
/// events (or the `durable` option), the subject with `.` as `_`, `*` as
/// `any` and `>` as `all` for work queues.
///
/// ```
/// use jetwire::topology::durable_for;
/// use jetwire::registry::Kind;
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
    prefixed_name(prefix, base)
}

/// The durable of a service's own consumer, `name`, in deployment
/// `prefix`: prefixed as every durable jetwire names (the prefix's dots
/// as `_`), so that deployments sharing a server never share it.
///
/// ```
/// use jetwire::topology::service_durable;
///
/// assert_eq!(service_durable(None, "audit-log"), "audit-log");
/// assert_eq!(service_durable(Some("eu.t1"), "audit-log"), "eu_t1_audit-log");
/// ```
pub fn service_durable(prefix: Option<&str>, name: &str) -> String {
    prefixed_name(prefix, name.to_owned())
}

fn prefixed_name(prefix: Option<&str>, base: String) -> String {
    match name_prefix(prefix) {
        Some(p) => format!("{p}_{base}"),
        None => base,
    }
}

/// Whether `durable` carries the names of deployment `prefix` (every name
/// does when there is no prefix).
pub(crate) fn durable_in_deployment(prefix: Option<&str>, durable: &str) -> bool {
    match name_prefix(prefix) {
        Some(p) => durable
            .strip_prefix(p.as_str())
            .is_some_and(|rest| rest.starts_with('_')),
        None => true,
    }
}

/// Who a durable jetwire made is for: the handler (its path) and app, and
/// the partition it reads. Written into the durable's metadata under
/// `jetwire.handler`, `jetwire.app` and `jetwire.partition` (and, for
/// people, into its description); read back by the advisory reader and
/// `status`. A consumer without them is not jetwire's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) handler: String,
    pub(crate) app: String,
    pub(crate) partition: Option<u32>,
}

const OWNER_HANDLER: &str = "jetwire.handler";
const OWNER_APP: &str = "jetwire.app";
const OWNER_PARTITION: &str = "jetwire.partition";

impl Owner {
    /// The durable's metadata saying so.
    pub(crate) fn metadata(&self) -> std::collections::HashMap<String, String> {
        let mut m = std::collections::HashMap::from([
            (OWNER_HANDLER.to_owned(), self.handler.clone()),
            (OWNER_APP.to_owned(), self.app.clone()),
        ]);
        if let Some(i) = self.partition {
            m.insert(OWNER_PARTITION.to_owned(), i.to_string());
        }
        m
    }

    /// The durable's description, for people (`nats consumer info`).
    pub(crate) fn description(&self) -> String {
        match self.partition {
            Some(i) => format!(
                "jetwire: {} in app {}, partition {i}",
                self.handler, self.app
            ),
            None => format!("jetwire: {} in app {}", self.handler, self.app),
        }
    }

    /// The owner a durable's metadata names; `None` for a consumer jetwire
    /// did not make (keys the server adds itself are ignored).
    pub(crate) fn read(metadata: &std::collections::HashMap<String, String>) -> Option<Owner> {
        Some(Owner {
            handler: metadata.get(OWNER_HANDLER)?.clone(),
            app: metadata.get(OWNER_APP)?.clone(),
            partition: match metadata.get(OWNER_PARTITION) {
                Some(i) => Some(i.parse().ok()?),
                None => None,
            },
        })
    }

    /// The handler's fn name: the last segment of its path.
    pub(crate) fn fn_name(&self) -> &str {
        self.handler.rsplit("::").next().unwrap_or(&self.handler)
    }
}

/// The stream that captures the max-deliveries advisories of jetwire's
/// streams.
pub(crate) fn advisory_stream(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_advisories")
}

/// The durable, shared by every app of a deployment, that turns captured
/// advisories into dead letters.
pub(crate) fn advisory_durable(prefix: Option<&str>) -> String {
    prefixed_name(prefix, "jetwire-dead-letters".to_owned())
}

/// The key-value bucket where each handler loop records the deliveries it
/// handed back unrun, and the last runs it began.
pub(crate) fn runs_bucket(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_runs")
}

/// The key-value bucket of the worker directory: one record per running
/// app instance.
pub(crate) fn workers_bucket(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_workers")
}

/// The key-value bucket of handlers' checkpoints.
pub(crate) fn checkpoints_bucket(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_checkpoints")
}

/// The key-value bucket of short locks between a deployment's apps (one
/// stream's config written at a time).
pub(crate) fn locks_bucket(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_locks")
}

/// The key-value bucket of output streamed by handlers.
pub(crate) fn output_bucket(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_output")
}

/// The key-value bucket of signals awaited by handlers.
pub(crate) fn signals_bucket(prefix: Option<&str>) -> String {
    default_stream(prefix, "jetwire_signals")
}

/// The key of one message's record in [`runs_bucket`]: its stream, the
/// durable it came through, and its stream sequence (each part as
/// [`key_part`] writes it).
pub(crate) fn run_key(stream: &str, durable: &str, sequence: u64) -> String {
    format!("{}.{}.{sequence}", key_part(stream), key_part(durable))
}

/// The key of one loop's record of last runs begun in [`runs_bucket`]:
/// its stream, its durable, `begun`, and the loop's own `id`. Never a
/// [`run_key`], whose last part is a number.
pub(crate) fn begun_key(stream: &str, durable: &str, id: &str) -> String {
    format!(
        "{}.{}.begun.{}",
        key_part(stream),
        key_part(durable),
        key_part(id)
    )
}

/// The keys of every loop's record of last runs begun on `durable` of
/// `stream` (see [`begun_key`]).
pub(crate) fn begun_keys(stream: &str, durable: &str) -> String {
    format!("{}.{}.begun.*", key_part(stream), key_part(durable))
}

/// The longest a part of a key is written out; a longer one is hashed.
const KEY_PART_MAX: usize = 128;

/// One part of a key-value key, from any text: letters, digits, `-` and
/// `_` as they are, any other character as `=<hex>=`; a part longer than
/// [`KEY_PART_MAX`] after that becomes `sha256/<hex of the text>` (`/`
/// never appears otherwise). Different texts give different parts, and a
/// key stays far below the server's 4 KiB protocol line whatever an
/// outside message id holds.
pub(crate) fn key_part(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => out.push(c),
            c => {
                let _ = write!(out, "={:x}=", u32::from(c));
            }
        }
        if out.len() > KEY_PART_MAX {
            break;
        }
    }
    if out.len() <= KEY_PART_MAX && !out.is_empty() {
        return out;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes());
    let mut hashed = String::from("sha256/");
    for b in digest {
        let _ = write!(hashed, "{b:02x}");
    }
    hashed
}

/// A name for the app when none is configured: the binary's file name, made
/// fit for a durable name.
pub(crate) fn sanitize_app(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if subject::is_token_char(c) { c } else { '-' })
        .collect();
    if s.is_empty() { "app".to_owned() } else { s }
}

/// The root of the max-deliveries advisories: the server sends one on
/// `<root>.<stream>.<consumer>` when a message reaches `max_deliver`.
pub(crate) const MAX_DELIVERIES_ROOT: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";

/// The advisory subjects of every consumer of `stream`.
pub(crate) fn max_deliveries_of(stream: &str) -> String {
    format!("{MAX_DELIVERIES_ROOT}.{stream}.*")
}

/// The subject pull requests for `durable` of `stream` go to, on the
/// JetStream API `api` (`$JS.API`, or a domain's).
pub(crate) fn msg_next(api: &str, stream: &str, durable: &str) -> String {
    format!("{api}.CONSUMER.MSG.NEXT.{stream}.{durable}")
}

/// The advisory the server sends on `event` (`LEADER_ELECTED`, `DELETED`)
/// of `durable` on `stream`.
pub(crate) fn consumer_advisory(event: &str, stream: &str, durable: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.{event}.{stream}.{durable}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_reads_back_from_its_metadata_and_nothing_else_is_one() {
        for partition in [None, Some(3)] {
            let owner = Owner {
                handler: "orders::on_order".into(),
                app: "billing".into(),
                partition,
            };
            let mut metadata = owner.metadata();
            metadata.insert("_nats.level".into(), "1".into());
            assert_eq!(Owner::read(&metadata), Some(owner.clone()));
            assert_eq!(owner.fn_name(), "on_order");
        }
        let foreign = std::collections::HashMap::from([("team".to_owned(), "billing".to_owned())]);
        assert_eq!(Owner::read(&foreign), None);
        let bad = std::collections::HashMap::from([
            (OWNER_HANDLER.to_owned(), "h".to_owned()),
            (OWNER_APP.to_owned(), "a".to_owned()),
            (OWNER_PARTITION.to_owned(), "x".to_owned()),
        ]);
        assert_eq!(Owner::read(&bad), None);
    }

    #[test]
    fn an_empty_prefix_is_no_prefix() {
        assert_eq!(default_stream(Some(""), "orders.x"), "ORDERS");
        assert_eq!(advisory_durable(Some("")), "jetwire-dead-letters");
        assert_eq!(dlq_stream_subjects(Some("")), "dlq.>");
    }

    #[test]
    fn prefixed_names() {
        assert_eq!(default_stream(Some("a.b"), "orders.x"), "A_B_ORDERS");
        assert_eq!(advisory_stream(Some("t1")), "T1_JETWIRE_ADVISORIES");
        assert_eq!(advisory_durable(Some("t1")), "t1_jetwire-dead-letters");
        assert_eq!(runs_bucket(Some("t1")), "T1_JETWIRE_RUNS");
        assert_eq!(run_key("QUEUE", "queue_email", 7), "QUEUE.queue_email.7");
        assert_eq!(run_key("A.B", "x y", 1), "A=2e=B.x=20=y.1");
        // Injective: no text's part is another's.
        assert_ne!(key_part("\u{3d0}"), key_part("=0"));
        assert_ne!(key_part("a=2e=b"), key_part("a.b"));
        // Bounded: a long id is hashed, and stays one of a kind.
        let long = ".".repeat(5000);
        assert!(key_part(&long).starts_with("sha256/"));
        assert!(key_part(&long).len() < 80);
        assert_ne!(key_part(&long), key_part(&".".repeat(5001)));
        assert_eq!(key_part(""), key_part(""));
        assert!(!key_part("").is_empty());
        assert_eq!(dlq_stream_subjects(Some("t1")), "t1.dlq.>");
        assert_eq!(
            durable_for(Some("a.b"), "app", Kind::Queue, "f", "queue.x.>", None),
            "a_b_queue_x_all"
        );
    }

    #[test]
    fn api_subjects() {
        assert_eq!(
            msg_next("$JS.API", "S", "d"),
            "$JS.API.CONSUMER.MSG.NEXT.S.d"
        );
        assert_eq!(
            msg_next("$JS.leaf.API", "S", "d"),
            "$JS.leaf.API.CONSUMER.MSG.NEXT.S.d"
        );
        assert_eq!(
            consumer_advisory("DELETED", "S", "d"),
            "$JS.EVENT.ADVISORY.CONSUMER.DELETED.S.d"
        );
        assert_eq!(
            max_deliveries_of("S"),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.*"
        );
    }

    #[test]
    fn app_names_fit_durables() {
        assert_eq!(sanitize_app("my app.v2"), "my-app-v2");
        assert_eq!(sanitize_app(""), "app");
    }
}
