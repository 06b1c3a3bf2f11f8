//! A pull subscription of jetwire's own on one durable: an inbox, the
//! requests sent for it, and what the server answers there.
//!
//! async-nats' pull streams wrap every message with a clone of the
//! `jetstream::Context` (a `Client` and a `String`), and each ack drops
//! one. Here messages come as they arrive on the inbox, and deliveries are
//! answered through one shared client ([`Acker`]).
//!
//! The status messages the server mixes in are read as async-nats reads
//! them: 404, 408 and 409 end a request (with how many of its messages
//! will not come, when the server says); a deleted or push-based consumer
//! and a request over the consumer's limits are errors; 503 means no
//! JetStream answers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Client, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};

use crate::names;
use crate::protocol::ack::Acker;
use crate::protocol::pin::server_pin;
pub(crate) use crate::protocol::pin::{PIN_GROUP, PinId};
pub(crate) use crate::protocol::pull_error::PullError;
use crate::protocol::reply::Delivered;
use crate::protocol::runs::{RunKey, Runs};

/// What a pull subscription hears.
#[derive(Debug)]
pub(crate) enum Pulled {
    /// A message of the stream, to be answered on its reply subject.
    Message(async_nats::Message),
    /// A pull request ended; `unanswered` of the messages it asked for
    /// will not come (all of them, when the server does not say). A
    /// request that asked for at most so many bytes, once all its messages
    /// came, ends with `Some(0)` after them (409 "Batch Completed"): on a
    /// shared inbox that end follows the request's last message, and may
    /// come after the next request went out.
    Ended { unanswered: Option<usize> },
    /// The server is there and has nothing to send.
    Heartbeat,
}

/// One pull request: how many messages, at most how many bytes, and for
/// a request that waits at the server, how long and how often the server
/// says it is still there. Without `wait`, the server answers at once
/// with what it has and forgets the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    pub(crate) batch: usize,
    pub(crate) max_bytes: usize,
    pub(crate) wait: Option<Wait>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    pub(crate) expires: Duration,
    pub(crate) heartbeat: Duration,
}

impl Request {
    /// The request's JSON, as ADR-13 has it; with the priority group, and
    /// the pin id if held, for a singleton. Built by `serde_json`, so no
    /// value can add a field of its own.
    fn body(&self, pin: Option<&PinId>) -> Bytes {
        let mut body = serde_json::Map::new();
        body.insert("batch".into(), self.batch.into());
        body.insert("max_bytes".into(), self.max_bytes.into());
        match self.wait {
            None => {
                body.insert("no_wait".into(), true.into());
            }
            Some(Wait { expires, heartbeat }) => {
                body.insert("expires".into(), nanos(expires).into());
                body.insert("idle_heartbeat".into(), nanos(heartbeat).into());
            }
        }
        if let Some(pin) = pin {
            body.insert("group".into(), PIN_GROUP.into());
            if let Some(id) = pin.get() {
                body.insert("id".into(), id.into());
            }
        }
        Bytes::from(serde_json::Value::Object(body).to_string())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One loop's pull subscription: an inbox, and the subject its requests
/// go to.
pub(crate) struct Pull {
    client: Arc<Client>,
    next: Subject,
    inbox: Subject,
    sub: Subscriber,
    handbacks: HandBacks,
    /// A singleton loop's pin, kept across subscriptions.
    pin: Option<Arc<PinId>>,
}

/// Where a loop records the deliveries it hands back unrun, so that they
/// do not count as runs ([`crate::policy::runs`]).
#[derive(Debug, Clone)]
pub(crate) struct HandBacks {
    pub(crate) runs: Arc<Runs>,
    pub(crate) stream: Arc<str>,
    pub(crate) durable: Arc<str>,
}

impl HandBacks {
    /// Records that `msg` goes back unrun. Nothing for a message whose
    /// reply subject does not say which it is.
    pub(crate) async fn note(&self, msg: &async_nats::Message) {
        let Some(delivered) = msg.reply.as_deref().and_then(Delivered::parse) else {
            return;
        };
        let key = RunKey::new(
            (&self.stream, &self.durable),
            delivered.stream_sequence,
            delivered.published_at,
        );
        self.runs
            .note_hand_back(&key, delivered.deliveries, None)
            .await;
    }
}

/// The subject pull requests for `durable` of `stream` go to, on the
/// JetStream API `api`.
pub(crate) fn next_subject(api: &str, stream: &str, durable: &str) -> Subject {
    Subject::from(names::msg_next(api, stream, durable))
}

impl Pull {
    /// Subscribes a fresh inbox for pull requests sent to `next`
    /// ([`next_subject`]). Each no-wait fetch gets one of its own: the
    /// server was seen to spend more per message when successive fetches
    /// shared an inbox.
    pub(crate) async fn open(
        client: Arc<Client>,
        next: Subject,
        handbacks: HandBacks,
        pin: Option<Arc<PinId>>,
    ) -> Result<Pull, PullError> {
        let inbox = Subject::from(client.new_inbox());
        let sub = client
            .subscribe(inbox.clone())
            .await
            .map_err(PullError::Subscribe)?;
        Ok(Pull {
            next,
            client,
            inbox,
            sub,
            handbacks,
            pin,
        })
    }

    /// Sends a pull request; its messages arrive on this subscription.
    pub(crate) async fn ask(&self, request: Request) -> Result<(), PullError> {
        self.client
            .publish_with_reply(
                self.next.clone(),
                self.inbox.clone(),
                request.body(self.pin.as_deref()),
            )
            .await
            .map_err(PullError::Send)
    }

    /// Naks what has arrived and not been taken, so another replica (or
    /// the next pull) gets it at once.
    pub(crate) async fn hand_back(&mut self) {
        let mut arrived = Vec::new();
        while let Some(Some(pulled)) = self.next().now_or_never() {
            if let Ok(Pulled::Message(msg)) = pulled {
                arrived.push(msg);
            }
        }
        let this = &*self;
        futures_util::future::join_all(arrived.iter().map(|m| this.hand_back_one(m))).await;
    }

    /// Naks one delivery that will not be taken, once its hand-back is
    /// recorded.
    pub(crate) async fn hand_back_one(&self, msg: &async_nats::Message) {
        self.handbacks.note(msg).await;
        if let Some(reply) = &msg.reply {
            let client = &self.client;
            let _ = Acker { client, reply }.ack_with(AckKind::Nak(None)).await;
        }
    }

    /// Stops the server delivering here, then hands back what arrived
    /// before it stopped. A request may still wait at the server for this
    /// inbox; while the inbox is subscribed, anything nak'ed meanwhile
    /// (an interrupted call's message, say) would be sent to it again, and
    /// come back only after `ack_wait` once the inbox is gone. So what
    /// arrives is kept, not nak'ed, until the inbox is gone.
    ///
    /// Messages the server sent before it learnt of the unsubscribe would
    /// be dropped on arrival, delivered to nobody, and come back only after
    /// `ack_wait` (counted as a run, since jetwire never saw them): so the
    /// inbox stays open until nothing has come for [`QUIET_FOR`] (at most
    /// [`QUIET_WITHIN`]), which a batch the server is still sending breaks.
    pub(crate) async fn close(mut self) {
        let mut arrived = Vec::new();
        let give_up = tokio::time::Instant::now() + QUIET_WITHIN;
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(QUIET_FOR, self.next()).await {
                Ok(Some(Ok(Pulled::Message(msg)))) => arrived.push(msg),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if self.sub.unsubscribe().await.is_ok() {
            // Unsubscribing closed the receiving end: what is buffered
            // comes, then the end (awaited, not polled once, so that
            // tokio's per-task budget cannot cut the hand-back short).
            let rest = async {
                while let Some(pulled) = self.next().await {
                    if let Ok(Pulled::Message(msg)) = pulled {
                        arrived.push(msg);
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSED_WITHIN, rest).await;
        }
        let this = &self;
        let handing = futures_util::future::join_all(arrived.iter().map(|m| this.hand_back_one(m)));
        let _ = tokio::time::timeout(CLOSED_WITHIN, handing).await;
        self.hand_back().await;
    }
}

impl Pull {
    /// Gives up one delivery unanswered, as [`Pull::abandon`] does.
    pub(crate) async fn forget(&self, msg: &async_nats::Message) {
        self.handbacks.note(msg).await;
    }

    /// Gives up what arrived and was not taken, unanswered: a pinned loop
    /// that was away past its pin's life holds deliveries the server may
    /// have sent to the replica pinned now (a nak from here could make it
    /// deliver one twice). Each is recorded as handed back, so it does not
    /// count as a run; the server sends it again after `ack_wait`.
    pub(crate) async fn abandon(mut self) {
        let _ = self.sub.unsubscribe().await;
        let mut arrived = Vec::new();
        let rest = async {
            while let Some(pulled) = self.sub.next().await {
                arrived.push(pulled);
            }
        };
        let _ = tokio::time::timeout(CLOSED_WITHIN, rest).await;
        let noting = arrived.iter().map(|m| self.forget(m));
        let _ = tokio::time::timeout(CLOSED_WITHIN, futures_util::future::join_all(noting)).await;
    }
}

/// Closing waits for this long a pause in what arrives: a batch on its way
/// comes faster.
const QUIET_FOR: Duration = Duration::from_millis(25);
/// The longest closing waits for that pause.
const QUIET_WITHIN: Duration = Duration::from_millis(500);

/// A bound on handing back what a closed subscription still holds; what
/// is not handed back by then comes back after `ack_wait`.
const CLOSED_WITHIN: Duration = Duration::from_secs(1);

impl Stream for Pull {
    type Item = Result<Pulled, PullError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let pin = self.pin.clone();
        std::pin::Pin::new(&mut self.sub)
            .poll_next(cx)
            .map(|m| m.map(|m| Pulled::read(m, pin.as_deref())))
    }
}

impl Pulled {
    /// The end of a request, with how many of its messages will not come
    /// when the server says.
    fn ended(msg: &async_nats::Message) -> Pulled {
        let unanswered = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Pending-Messages"))
            .and_then(|n| n.as_str().parse().ok());
        Pulled::Ended { unanswered }
    }

    /// What one message on a pull inbox means; a singleton's messages
    /// carry its pin.
    fn read(msg: async_nats::Message, pin: Option<&PinId>) -> Result<Pulled, PullError> {
        let status = match msg.status {
            None | Some(StatusCode::OK) => {
                if let Some(pin) = pin
                    && let Some(id) = msg.headers.as_ref().and_then(server_pin)
                {
                    pin.set(Some(id));
                }
                return Ok(Pulled::Message(msg));
            }
            Some(status) => status,
        };
        // 423: the pin this request sent is not the server's any more;
        // pull on standby until the server pins this replica again.
        if status.as_u16() == 423 {
            if let Some(pin) = pin {
                pin.set(None);
            }
            return Ok(Pulled::Ended { unanswered: None });
        }
        // A 400 stays an error (the loop pauses), and clears the pin:
        // whatever made the request bad, the same pin must not be sent again.
        if status.as_u16() == 400
            && let Some(pin) = pin
        {
            pin.set(None);
        }
        let description = msg.description.as_deref().unwrap_or_default();
        match status {
            StatusCode::IDLE_HEARTBEAT => Ok(Pulled::Heartbeat),
            // No messages (for a no-wait fetch), or the request expired.
            StatusCode::NOT_FOUND | StatusCode::TIMEOUT => Ok(Pulled::ended(&msg)),
            // A request cut short, by name: a leader change ends it, and
            // so does its last message when it asked for so many bytes.
            // Any other 409 (a deleted or push-based consumer, a request
            // over the consumer's limits, a message larger than the
            // request's bytes, a server shutting down) is an error, which
            // the loop answers with a pause instead of asking again at once.
            StatusCode::REQUEST_TERMINATED
                if description == "Leadership Change" || description == "Batch Completed" =>
            {
                Ok(Pulled::ended(&msg))
            }
            StatusCode::REQUEST_TERMINATED => {
                Err(PullError::status(true, status.as_u16(), description))
            }
            StatusCode::NO_RESPONDERS => Err(PullError::NoResponders),
            status => Err(PullError::status(false, status.as_u16(), description)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::HeaderMap;

    fn status(code: u16, description: &str, pending: Option<&str>) -> async_nats::Message {
        let headers = pending.map(|n| {
            let mut h = HeaderMap::new();
            h.insert("Nats-Pending-Messages", n);
            h
        });
        async_nats::Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload: Bytes::new(),
            headers,
            status: Some(StatusCode::from_u16(code).expect("a status code")),
            description: Some(description.to_owned()),
            length: 0,
        }
    }

    /// A message of the stream with `headers`, as a pinned client gets it.
    fn delivered(headers: HeaderMap) -> async_nats::Message {
        async_nats::Message {
            subject: "x".into(),
            reply: None,
            payload: Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    fn json(body: Bytes) -> serde_json::Value {
        serde_json::from_slice(&body).expect("a request is JSON")
    }

    #[test]
    fn requests_as_the_server_reads_them() {
        use serde_json::json;
        let fetch = Request {
            batch: 512,
            max_bytes: 1024,
            wait: None,
        };
        assert_eq!(
            json(fetch.body(None)),
            json!({"batch": 512, "max_bytes": 1024, "no_wait": true})
        );
        let waiting = Request {
            wait: Some(Wait {
                expires: Duration::from_secs(30),
                heartbeat: Duration::from_secs(5),
            }),
            ..fetch
        };
        assert_eq!(
            json(waiting.body(None)),
            json!({"batch": 512, "max_bytes": 1024, "expires": 30_000_000_000u64, "idle_heartbeat": 5_000_000_000u64})
        );
        // A singleton asks in its priority group, with its pin once it has one.
        let pin = PinId::default();
        assert_eq!(
            json(fetch.body(Some(&pin))),
            json!({"batch": 512, "max_bytes": 1024, "no_wait": true, "group": "jetwire"})
        );
        pin.set(Some("p1"));
        assert_eq!(
            json(fetch.body(Some(&pin))),
            json!({"batch": 512, "max_bytes": 1024, "no_wait": true, "group": "jetwire", "id": "p1"})
        );
    }

    #[test]
    fn a_singleton_keeps_the_pin_its_messages_carry_until_a_423() {
        let pin = PinId::default();
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Pin-Id", "p7");
        let msg = delivered(headers);
        assert!(matches!(
            Pulled::read(msg, Some(&pin)),
            Ok(Pulled::Message(_))
        ));
        assert_eq!(pin.get().as_deref(), Some("p7"));
        let mismatch = status(423, "Nats-Pin-Id mismatch", None);
        assert!(matches!(
            Pulled::read(mismatch, Some(&pin)),
            Ok(Pulled::Ended { unanswered: None })
        ));
        assert_eq!(pin.get(), None, "on standby again");
    }

    #[test]
    fn the_pin_is_the_one_the_server_appended_and_a_400_clears_it() {
        let pin = PinId::default();
        let mut headers = HeaderMap::new();
        // What the publisher stored comes first; the server appends its own.
        headers.append("Nats-Pin-Id", "\"");
        headers.append("Nats-Pin-Id", "Srv42");
        let msg = delivered(headers);
        assert!(Pulled::read(msg, Some(&pin)).is_ok());
        assert_eq!(pin.get().as_deref(), Some("Srv42"));
        let fetch = Request {
            batch: 1,
            max_bytes: 0,
            wait: None,
        };
        assert_eq!(json(fetch.body(Some(&pin)))["id"], "Srv42");
        // An id the server would not make is never sent, and the request
        // stays JSON whatever it holds.
        pin.set(Some("x\",\"batch\":100000,\"no_wait\":true"));
        assert_eq!(json(fetch.body(Some(&pin)))["batch"], 1);
        let mut forged = HeaderMap::new();
        forged.append("Nats-Pin-Id", "a\"b");
        assert_eq!(server_pin(&forged), None);
        assert!(Pulled::read(status(400, "Bad Request", None), Some(&pin)).is_err());
        assert_eq!(pin.get(), None, "a 400 clears the pin");
    }

    #[test]
    fn statuses_end_requests_or_fail() {
        let ended = |m| match Pulled::read(m, None) {
            Ok(Pulled::Ended { unanswered }) => unanswered,
            other => panic!("not an end: {other:?}"),
        };
        assert_eq!(ended(status(404, "No Messages", None)), None);
        assert_eq!(ended(status(408, "Request Timeout", Some("17"))), Some(17));
        assert_eq!(ended(status(409, "Leadership Change", Some("3"))), Some(3));
        assert_eq!(ended(status(409, "Batch Completed", Some("0"))), Some(0));
        assert!(matches!(
            Pulled::read(status(100, "Idle Heartbeat", None), None),
            Ok(Pulled::Heartbeat)
        ));
        for (code, description) in [
            (409, "Consumer Deleted"),
            (409, "Consumer is push based"),
            (409, "Exceeded MaxRequestBatch of 100"),
            (409, "Exceeded MaxWaiting"),
            (409, "Message Size Exceeds MaxBytes"),
            (409, "Server Shutdown"),
            (409, "Something New"),
            (503, ""),
            (400, "Bad Request"),
        ] {
            let kind = match Pulled::read(status(code, description, None), None) {
                Err(PullError::Refused { status, .. }) => ("refused", status),
                Err(PullError::NoResponders) => ("no responders", 503),
                Err(PullError::Unexpected { status, .. }) => ("unexpected", status),
                _ => ("not an error", code),
            };
            let want = match code {
                409 => "refused",
                503 => "no responders",
                _ => "unexpected",
            };
            assert_eq!(kind, (want, code), "{code} {description}");
        }
    }

    #[test]
    fn a_message_is_a_message() {
        let msg = async_nats::Message {
            subject: "orders.created".into(),
            reply: Some("$JS.ACK.ORDERS.app-h.1.1.1.1.0".into()),
            payload: Bytes::from_static(b"{}"),
            headers: None,
            status: None,
            description: None,
            length: 2,
        };
        assert!(matches!(Pulled::read(msg, None), Ok(Pulled::Message(_))));
    }
}
