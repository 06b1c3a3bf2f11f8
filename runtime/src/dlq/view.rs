//! [`DeadLetter`], one letter as an operator sees it, and [`Filter`], which
//! letters an operation applies to.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::classify::DlqReason;
use crate::dlq::letter;
use crate::publish::MSG_ID;

/// One dead letter: where it failed, why, and the original message.
///
/// ```no_run
/// # async fn demo(dlq: jetwire::dlq::DeadLetters) -> Result<(), jetwire::Error> {
/// let letter = dlq.get(7).await?;
/// println!("{} failed in {:?}: {:?}", letter.subject(), letter.handler(), letter.error());
/// let order: serde_json::Value = letter.decode().map_err(|e| jetwire::Error::Config(e.to_string()))?;
/// # let _ = order; Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeadLetter {
    pub(crate) sequence: u64,
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
    pub(crate) stored_at: SystemTime,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("sequence", &self.sequence)
            .field("subject", &self.subject)
            .field("reason", &self.header(letter::REASON))
            .field("handler", &self.handler())
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// The original subject of a letter stored under `letter_subject`: the
/// deployment's prefix and the `dlq.` token taken off.
pub(crate) fn original_subject(prefix: Option<&str>, letter_subject: &str) -> String {
    let unprefixed = match prefix.filter(|p| !p.is_empty()) {
        Some(p) => letter_subject
            .strip_prefix(p)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(letter_subject),
        None => letter_subject,
    };
    unprefixed
        .strip_prefix("dlq.")
        .unwrap_or(unprefixed)
        .to_owned()
}

impl DeadLetter {
    /// A letter as a consumer of your own on the dead-letter stream gets it
    /// (a service that copies letters elsewhere, say); `prefix` is the
    /// deployment's subject prefix. Nothing in it is trusted to be there:
    /// a message jetwire did not write reads with `None`s.
    ///
    /// ```no_run
    /// # async fn demo(m: jetwire::async_nats::jetstream::Message) {
    /// let letter = jetwire::dlq::DeadLetter::from_message(Some("eu"), &m);
    /// println!("{} failed in {:?}", letter.subject(), letter.handler());
    /// # }
    /// ```
    pub fn from_message(
        prefix: Option<&str>,
        message: &async_nats::jetstream::Message,
    ) -> DeadLetter {
        let info = message.info().ok();
        DeadLetter {
            sequence: info.as_ref().map_or(0, |i| i.stream_sequence),
            subject: original_subject(prefix, message.subject.as_str()),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
            stored_at: info
                .as_ref()
                .map_or_else(SystemTime::now, |i| SystemTime::from(i.published)),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// Its sequence in the dead-letter stream: what `get`, `replay` and
    /// `purge` take.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The original subject (without the subject prefix).
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// Why it was dead-lettered; `None` for a letter jetwire did not write.
    pub fn reason(&self) -> Option<DlqReason> {
        self.header(letter::REASON)?.parse().ok()
    }
    /// The handler's error.
    pub fn error(&self) -> Option<&str> {
        self.header(letter::ERROR)
    }
    /// The handler's fn name.
    pub fn handler(&self) -> Option<&str> {
        self.header(letter::HANDLER)
    }
    /// How many runs the handler had.
    pub fn attempts(&self) -> Option<u32> {
        self.header(letter::ATTEMPTS)?.parse().ok()
    }
    /// When it was dead-lettered (when the dead-letter stream stored it).
    pub fn failed_at(&self) -> SystemTime {
        self.stored_at
    }
    /// The stream the original was in.
    pub fn original_stream(&self) -> Option<&str> {
        self.header(letter::STREAM)
    }
    /// The original's sequence there.
    pub fn original_sequence(&self) -> Option<u64> {
        self.header(letter::SEQUENCE)?.parse().ok()
    }
    /// The original's `Nats-Msg-Id`, if it had one.
    pub fn message_id(&self) -> Option<&str> {
        self.header(letter::MESSAGE_ID)
    }
    /// The original's payload version (`Jetwire-Version`), if it had one.
    pub fn version(&self) -> Option<&str> {
        self.header(crate::publish::message::VERSION)
    }
    /// The original payload's `Content-Type` (its codec), if it had one.
    pub fn content_type(&self) -> Option<&str> {
        self.header(crate::publish::message::CONTENT_TYPE)
    }
    /// The original payload as JSON, for a person to read: JSON as it is,
    /// MessagePack and CBOR decoded (features `msgpack`, `cbor`); `None`
    /// for any other bytes.
    pub fn payload_as_json(&self) -> Option<serde_json::Value> {
        crate::codecs::as_json(self.content_type(), &self.payload)
    }
    /// The letter's own `Nats-Msg-Id`.
    pub fn letter_id(&self) -> Option<&str> {
        self.header(MSG_ID)
    }
    /// Every header of the letter, `Jetwire-Dlq-*` ones included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The original payload (cut to fit, when the letter says
    /// `Jetwire-Dlq-Truncated`).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The payload decoded from JSON.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// The original message's headers as they were: the `Jetwire-Dlq-*`
    /// headers gone, the `Jetwire-Dlq-Orig-*` ones restored under their
    /// own names, except those a replay must not carry
    /// (`Nats-Expected-*`, `Nats-Msg-Id`, `Nats-Rollup`, `Nats-TTL`,
    /// `Nats-Pin-Id`).
    pub(crate) fn original_headers(&self) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, values) in self.headers.iter() {
            let name: &str = name.as_ref();
            let restored = name.strip_prefix(letter::ORIGINAL);
            let keep = match restored {
                Some(n) => letter::restored_on_replay(n),
                None => {
                    !name.starts_with("Jetwire-Dlq-")
                        && !name.eq_ignore_ascii_case(MSG_ID)
                        && !name.eq_ignore_ascii_case(letter::PIN_ID)
                }
            };
            if keep {
                for v in values {
                    out.append(restored.unwrap_or(name), v.as_str());
                }
            }
        }
        out
    }
}

/// A handler of dead letters takes one as its payload:
/// `#[subscribe("dlq.>")] async fn alert(letter: DeadLetter)`. Its
/// failures are logged, never dead-lettered again, and the letter stays in
/// the dead-letter stream.
impl crate::handler::extract::Payload for DeadLetter {
    const DEAD_LETTERS: bool = true;

    fn decode(
        bytes: Bytes,
        delivery: &crate::handler::delivery::Delivery,
    ) -> Result<Self, crate::error::HandlerError> {
        let ctx = delivery.context();
        Ok(DeadLetter {
            sequence: ctx.stream_sequence(),
            // The context's subject has no prefix.
            subject: original_subject(None, ctx.subject()),
            headers: ctx.headers().clone(),
            payload: bytes,
            stored_at: ctx.published_at(),
        })
    }
}

/// Which letters an operation applies to; every condition given must
/// hold. Oldest first.
///
/// ```
/// use std::time::Duration;
/// use jetwire::DlqReason;
/// use jetwire::dlq::Filter;
///
/// let f = Filter::new().reason(DlqReason::Decode).handler("send_email").limit(100);
/// assert_eq!(f.max(), Some(100));
/// let recent = Filter::new().within(Duration::from_secs(2 * 3600));
/// # let _ = recent;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub(crate) reason: Option<DlqReason>,
    pub(crate) handler: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) since: Option<SystemTime>,
    /// A window back from the time the filter is used.
    within: Option<Duration>,
    pub(crate) limit: Option<usize>,
    pub(crate) sequences: Option<Vec<u64>>,
    pub(crate) from: Option<u64>,
    pub(crate) up_to: Option<u64>,
}

impl Filter {
    /// Every letter.
    pub fn new() -> Filter {
        Filter::default()
    }
    /// Letters dead-lettered for `reason`.
    pub fn reason(mut self, reason: DlqReason) -> Filter {
        self.reason = Some(reason);
        self
    }
    /// Letters of handler `name` (its fn name).
    pub fn handler(mut self, name: impl Into<String>) -> Filter {
        self.handler = Some(name.into());
        self
    }
    /// Letters of original subject `subject` (wildcards allowed).
    pub fn subject(mut self, subject: impl Into<String>) -> Filter {
        self.subject = Some(subject.into());
        self
    }
    /// Letters dead-lettered at or after `time`.
    pub fn since(mut self, time: SystemTime) -> Filter {
        self.since = Some(time);
        self
    }
    /// Letters dead-lettered within the last `window`, counted back from
    /// when the filter is used (by the app's clock), not when it is made.
    pub fn within(mut self, window: Duration) -> Filter {
        self.within = Some(window);
        self
    }
    /// At most `n` letters.
    pub fn limit(mut self, n: usize) -> Filter {
        self.limit = Some(n);
        self
    }
    /// Only these sequences.
    pub fn sequences(mut self, sequences: impl IntoIterator<Item = u64>) -> Filter {
        self.sequences = Some(sequences.into_iter().collect());
        self
    }
    /// Letters at or after sequence `seq`: to page through the stream,
    /// pass the last sequence seen plus one.
    pub fn from_sequence(mut self, seq: u64) -> Filter {
        self.from = Some(seq);
        self
    }
    /// Letters at or before sequence `seq`: to act on exactly what was
    /// counted, pass the stream's last sequence read then
    /// ([`DeadLetters::count`](crate::dlq::DeadLetters::count)).
    pub fn up_to(mut self, seq: u64) -> Filter {
        self.up_to = Some(seq);
        self
    }
    /// The limit, if any.
    pub fn max(&self) -> Option<usize> {
        self.limit
    }

    /// This filter used at `now`: its `within` window as a time, the later
    /// of it and `since`.
    pub(crate) fn at(&self, now: SystemTime) -> Filter {
        let mut filter = self.clone();
        if let Some(window) = filter.within.take() {
            let start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
            filter.since = Some(filter.since.map_or(start, |since| since.max(start)));
        }
        filter
    }

    /// Whether `letter` passes every condition: what its headers say, its
    /// subject, when it was stored and where it sits. A letter of a
    /// partitioned handler (stored under its partition subject) passes a
    /// subject that its original subject matches.
    pub(crate) fn admits(&self, letter: &DeadLetter) -> bool {
        self.reason.is_none_or(|r| letter.reason() == Some(r))
            && self
                .handler
                .as_deref()
                .is_none_or(|h| letter.handler() == Some(h))
            && self.since.is_none_or(|t| letter.stored_at >= t)
            && self.from.is_none_or(|f| letter.sequence >= f)
            && self.up_to.is_none_or(|u| letter.sequence <= u)
            && self
                .subject
                .as_deref()
                .is_none_or(|s| subject_admits(s, &letter.subject))
            && self
                .sequences
                .as_ref()
                .is_none_or(|s| s.contains(&letter.sequence))
    }
}

/// Whether a letter stored under `subject` is one of `pattern`: the
/// subject itself, or the partition subject (`<subject>._p<i>`) of one.
pub(crate) fn subject_admits(pattern: &str, subject: &str) -> bool {
    use jetwire_grammar::subject::matches;
    matches(pattern, subject)
        || crate::partition::unpartitioned(subject).is_some_and(|s| matches(pattern, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::letter::{Failed, letter};

    #[test]
    fn a_replay_carries_the_original_headers_but_no_rollup_ttl_pin_or_expectation() {
        let mut original = HeaderMap::new();
        original.insert(MSG_ID, "order-7");
        original.insert("X-Tenant", "acme");
        original.insert("Nats-Rollup", "sub");
        original.insert("Nats-TTL", "5s");
        original.insert("Nats-Expected-Last-Sequence", "3");
        original.append("Nats-Pin-Id", "forged");
        original.append("Nats-Pin-Id", "Srv1");
        original.insert("Nats-Trace-Dest", "kept.for.the.operator");
        let out = letter(Failed {
            subject: "orders.created",
            headers: &original,
            payload: Bytes::from_static(b"{}"),
            reason: DlqReason::Permanent,
            error: "no",
            handler: "h",
            durable: "d",
            attempts: 1,
            stream: "ORDERS",
            sequence: 1,
            published_at: SystemTime::UNIX_EPOCH,
            failed_at: SystemTime::UNIX_EPOCH,
        });
        assert!(
            out.headers
                .iter()
                .all(|(n, _)| !n.to_string().ends_with("Pin-Id")),
            "a letter keeps no pin id"
        );
        assert_eq!(
            out.headers
                .get("Jetwire-Dlq-Orig-Nats-Rollup")
                .map(|v| v.as_str()),
            Some("sub"),
            "the letter still shows it"
        );
        let dead = DeadLetter {
            sequence: 1,
            subject: "orders.created".into(),
            headers: out.headers,
            payload: out.payload,
            stored_at: SystemTime::UNIX_EPOCH,
        };
        let replayed = dead.original_headers();
        let names: Vec<String> = replayed.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(replayed.get("X-Tenant").map(|v| v.as_str()), Some("acme"));
        assert_eq!(
            replayed.get("Nats-Trace-Dest").map(|v| v.as_str()),
            Some("kept.for.the.operator")
        );
        for never in [
            "Nats-Rollup",
            "Nats-TTL",
            "Nats-Pin-Id",
            "Nats-Expected-Last-Sequence",
            MSG_ID,
        ] {
            assert!(
                !names.iter().any(|n| n.eq_ignore_ascii_case(never)),
                "{never} in {names:?}"
            );
        }
    }
}
