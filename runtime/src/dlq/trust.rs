//! What a captured max-deliveries advisory must show before jetwire acts
//! on it. Anyone allowed to publish on `$JS.EVENT.>` can put a message in
//! the advisory stream, and acting on one copies a message into the DLQ
//! and, for a work queue, deletes it. So an advisory is read, pure and
//! without I/O, into a [`Claim`] only when its subject and body agree and
//! every name in it is one jetwire could have made; whether the durable is
//! one of jetwire's is checked against the server afterwards
//! ([`jetwire_owner`]).

use std::collections::HashMap;

use jetwire_grammar::name;
use serde::Deserialize;

use crate::names::{self, Owner};
use crate::text;

/// The most bytes of an advisory's own text that a log line carries.
const SHOWN: usize = 120;

/// A max-deliveries advisory that passed the checks: a message of
/// `stream` whose last delivery through `durable` went unanswered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) stream_seq: u64,
    pub(crate) deliveries: u64,
}

/// Why an advisory is not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The body is not a max-deliveries advisory.
    Unreadable(String),
    /// The subject is not `<root>.<stream>.<consumer>`, or names another
    /// stream or consumer than the body.
    Mismatch(String),
    /// A stream or consumer name jetwire would never make.
    BadName(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unreadable(why) => write!(f, "not a max-deliveries advisory: {why}"),
            Refused::Mismatch(why) => write!(f, "subject and body disagree: {why}"),
            Refused::BadName(why) => write!(f, "not a name jetwire makes: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Reads the advisory stored on `subject` with `payload`.
pub(crate) fn read(subject: &str, payload: &[u8]) -> Result<Claim, Refused> {
    let body: Body =
        serde_json::from_slice(payload).map_err(|e| Refused::Unreadable(shown(&e.to_string())))?;
    let tokens = subject
        .strip_prefix(names::MAX_DELIVERIES_ROOT)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split_once('.'))
        .filter(|(_, consumer)| !consumer.contains('.'));
    let Some((stream, consumer)) = tokens else {
        return Err(Refused::Mismatch(format!(
            "subject `{}` is not a max-deliveries advisory's",
            shown(subject)
        )));
    };
    if stream != body.stream || consumer != body.consumer {
        return Err(Refused::Mismatch(format!(
            "subject names `{}`/`{}`, body `{}`/`{}`",
            shown(stream),
            shown(consumer),
            shown(&body.stream),
            shown(&body.consumer)
        )));
    }
    for (value, kind) in [
        (&body.stream, name::Kind::Stream),
        (&body.consumer, name::Kind::Durable),
    ] {
        name::check(value, kind).map_err(|e| Refused::BadName(shown(&e.to_string())))?;
    }
    Ok(Claim {
        stream: body.stream,
        durable: body.consumer,
        stream_seq: body.stream_seq,
        deliveries: body.deliveries,
    })
}

/// Who owns `durable`, if this deployment (`prefix`) made it: jetwire
/// writes the owner into its durables' metadata, and prefixes their names.
pub(crate) fn jetwire_owner(
    prefix: Option<&str>,
    durable: &str,
    metadata: &HashMap<String, String>,
) -> Option<Owner> {
    Owner::read(metadata).filter(|_| names::durable_in_deployment(prefix, durable))
}

/// Outside text, bounded for a log line.
fn shown(text: &str) -> String {
    text::bounded(text, SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(stream: &str, consumer: &str) -> String {
        format!("{}.{stream}.{consumer}", names::MAX_DELIVERIES_ROOT)
    }

    fn body(stream: &str, consumer: &str) -> Vec<u8> {
        serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.max_deliver",
            "stream": stream, "consumer": consumer, "stream_seq": 7, "deliveries": 3
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn an_advisory_whose_subject_and_body_agree_is_read() {
        assert_eq!(
            read(
                &subject("QUEUE", "queue_email"),
                &body("QUEUE", "queue_email")
            ),
            Ok(Claim {
                stream: "QUEUE".into(),
                durable: "queue_email".into(),
                stream_seq: 7,
                deliveries: 3,
            })
        );
    }

    #[test]
    fn forged_and_malformed_advisories_are_refused() {
        let refused = |subject: &str, payload: &[u8]| read(subject, payload).expect_err(subject);
        assert!(matches!(
            refused(&subject("QUEUE", "c"), &body("OTHER", "c")),
            Refused::Mismatch(_)
        ));
        assert!(matches!(
            refused(&subject("QUEUE", "c"), &body("QUEUE", "d")),
            Refused::Mismatch(_)
        ));
        // A consumer with CR/LF can only be in the body, never a token.
        assert!(matches!(
            refused(&subject("QUEUE", "c"), &body("QUEUE", "c\r\nX-Evil: 1")),
            Refused::Mismatch(_)
        ));
        assert!(matches!(
            refused(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.QUEUE",
                &body("QUEUE", "c")
            ),
            Refused::Mismatch(_)
        ));
        assert!(matches!(
            refused(&subject("QUEUE", "c.d"), &body("QUEUE", "c.d")),
            Refused::Mismatch(_)
        ));
        assert!(matches!(
            refused(&subject("QUEUE", "c"), b"{not json"),
            Refused::Unreadable(_)
        ));
        assert!(matches!(
            refused(&subject("QUEUE", "c"), b"{\"stream\":\"QUEUE\"}"),
            Refused::Unreadable(_)
        ));
        let long = "x".repeat(100);
        assert!(matches!(
            refused(&subject("QUEUE", &long), &body("QUEUE", &long)),
            Refused::BadName(_)
        ));
    }

    #[test]
    fn refusals_say_little_of_what_they_were_sent() {
        let huge = "a\r\n".repeat(100_000);
        let why = read(&subject("Q", "c"), &body("Q", &huge))
            .expect_err("mismatch")
            .to_string();
        assert!(why.len() < 1000, "{} bytes", why.len());
        assert!(!why.contains(['\r', '\n']));
    }

    #[test]
    fn only_this_deployments_marked_durables_are_jetwires() {
        let m = Owner {
            handler: "app::h".into(),
            app: "app".into(),
            partition: None,
        }
        .metadata();
        assert!(jetwire_owner(None, "app-h", &m).is_some());
        assert!(jetwire_owner(Some("t1"), "t1_app-h", &m).is_some());
        assert!(jetwire_owner(Some("t1"), "app-h", &m).is_none());
        assert!(jetwire_owner(Some("t1"), "t2_app-h", &m).is_none());
        let theirs = HashMap::from([("owner".to_owned(), "billing".to_owned())]);
        assert!(jetwire_owner(None, "billing", &theirs).is_none());
    }
}
