//! Everything about one delivery ([`Meta`]): its handler and durable,
//! subject, headers, message id, and which run of its handler it is,
//! read from the reply subject only when asked for.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use async_nats::{HeaderMap, Subject};
use jetwire_grammar::subject;

use crate::protocol::reply::Delivered;
use crate::publish::message;

/// Everything about one delivery.
pub(crate) struct Meta {
    pub(crate) handler: &'static str,
    pub(crate) durable: Arc<str>,
    /// The subject as stored, with the prefix, and where the part without
    /// it starts: a delivery's subject is never copied.
    full_subject: Subject,
    subject_start: usize,
    pub(crate) headers: HeaderMap,
    /// Made on first use: see [`Meta::message_id`].
    message_id: OnceLock<String>,
    /// The `$JS.ACK.` subject a live delivery came with, read into
    /// `delivered` on first use.
    pub(crate) reply: Option<Subject>,
    delivered: OnceLock<Delivered>,
    /// Which run of the handler this is, when it is not the delivery's
    /// number (deliveries handed back unrun do not count).
    attempt: OnceLock<u32>,
    pub(crate) max_deliver: u32,
    pub(crate) stream: Arc<str>,
}

/// Which handler a delivery is for, and where: its name, the stream and
/// durable it came through, and its `max_deliver`.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) handler: &'static str,
    pub(crate) stream: Arc<str>,
    pub(crate) durable: Arc<str>,
    pub(crate) max_deliver: u32,
}

/// Where a delivery's attempt and stream sequence come from.
pub(crate) enum Origin {
    /// A live delivery's reply subject, read only when first asked for.
    Reply(Subject),
    /// Known already (`TestApp`).
    Known(Delivered),
}

impl Meta {
    /// One delivery of `route` on `full_subject` (which carries `prefix`).
    pub(crate) fn new(
        route: &Route,
        full_subject: Subject,
        prefix: Option<&str>,
        headers: HeaderMap,
        origin: Origin,
    ) -> Meta {
        let full = full_subject.as_str();
        let subject_start = full.len() - subject::strip_prefix(prefix, full).unwrap_or(full).len();
        let (reply, delivered) = match origin {
            Origin::Reply(reply) => (Some(reply), OnceLock::new()),
            Origin::Known(delivered) => (None, OnceLock::from(delivered)),
        };
        Meta {
            handler: route.handler,
            durable: route.durable.clone(),
            full_subject,
            subject_start,
            headers,
            message_id: OnceLock::new(),
            reply,
            delivered,
            attempt: OnceLock::new(),
            max_deliver: route.max_deliver,
            stream: route.stream.clone(),
        }
    }

    /// The subject without the subject prefix.
    pub(crate) fn subject(&self) -> &str {
        self.full_subject
            .get(self.subject_start..)
            .unwrap_or_default()
    }

    /// The message's id: a replay's original one ([`message::REPLAYED_ID`]),
    /// else its `Nats-Msg-Id`, else `<stream>:<sequence>`: the same on
    /// every redelivery.
    pub(crate) fn message_id(&self) -> &str {
        self.message_id.get_or_init(|| {
            let id = self
                .headers
                .get(message::REPLAYED_ID)
                .or_else(|| self.headers.get(message::MSG_ID));
            match id {
                Some(id) => id.as_str().to_owned(),
                None => format!("{}:{}", self.stream, self.delivered().stream_sequence),
            }
        })
    }

    /// Which run of the handler this is, from 1: the delivery's number
    /// unless the loop counted it otherwise ([`Meta::count_attempt`]).
    pub(crate) fn attempt(&self) -> u32 {
        match self.attempt.get() {
            Some(attempt) => *attempt,
            None => self.delivered().deliveries,
        }
    }

    /// Sets which run of the handler this is, once, before it runs.
    pub(crate) fn count_attempt(&self, attempt: u32) {
        let _ = self.attempt.set(attempt);
    }

    /// Which delivery this is and where the message sits in its stream.
    pub(crate) fn delivered(&self) -> Delivered {
        *self.delivered.get_or_init(|| {
            let reply = self.reply.as_deref().unwrap_or_default();
            Delivered::parse(reply).unwrap_or_else(|| {
                tracing::error!(
                    reply,
                    "unreadable JetStream reply subject; taking it as a first delivery"
                );
                Delivered {
                    deliveries: 1,
                    stream_sequence: 0,
                    published_at: SystemTime::UNIX_EPOCH,
                }
            })
        })
    }
}
