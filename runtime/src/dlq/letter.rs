//! The dead letter: its headers, and the message that carries them.
//!
//! A dead letter is published to `dlq.<original subject>` with the original
//! payload and headers plus the `Jetwire-Dlq-*` headers below. Its
//! `Nats-Msg-Id` is [`letter_id`], so writing the same failure twice (a
//! crash between the copy and the term, or the advisory path racing a live
//! replica) stores it once.

use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::classify::DlqReason;
use crate::handler::context::Meta;
use crate::names;
use crate::observe::trace;
use crate::publish::message::{MSG_ID, Outbound};
use crate::text;

/// The longest `Jetwire-Dlq-Error`, in bytes.
const ERROR_MAX: usize = 1024;

/// `Jetwire-Dlq-Reason`: one of [`DlqReason`]'s names.
pub const REASON: &str = "Jetwire-Dlq-Reason";
/// `Jetwire-Dlq-Error`: the handler's error message.
pub const ERROR: &str = "Jetwire-Dlq-Error";
/// `Jetwire-Dlq-Handler`: the handler's fn name.
pub const HANDLER: &str = "Jetwire-Dlq-Handler";
/// `Jetwire-Dlq-Attempts`: deliveries made.
pub const ATTEMPTS: &str = "Jetwire-Dlq-Attempts";
/// `Jetwire-Dlq-Stream`: the stream the message came from.
pub const STREAM: &str = "Jetwire-Dlq-Stream";
/// `Jetwire-Dlq-Sequence`: its sequence in that stream.
pub const SEQUENCE: &str = "Jetwire-Dlq-Sequence";
/// `Jetwire-Dlq-Failed-At`: when it was dead-lettered, RFC 3339.
pub const FAILED_AT: &str = "Jetwire-Dlq-Failed-At";
/// `Jetwire-Dlq-Message-Id`: the original `Nats-Msg-Id`, if it had one.
pub const MESSAGE_ID: &str = "Jetwire-Dlq-Message-Id";

/// The header the server adds to a message it delivers to a pinned client.
pub(crate) const PIN_ID: &str = "Nats-Pin-Id";

/// What a replay never restores of an original's `Nats-*` headers: the
/// expectations (which would refuse it), the id (which would be taken for
/// the original's), a rollup (which would delete newer messages), a TTL
/// (set for the original's time, not the replay's) and a pin id.
pub(crate) fn restored_on_replay(name: &str) -> bool {
    let never = [MSG_ID, "Nats-Rollup", "Nats-TTL", PIN_ID];
    !name
        .get(..14)
        .is_some_and(|p| p.eq_ignore_ascii_case("Nats-Expected-"))
        && !never.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The error of a letter whose last run never answered.
pub(crate) const NEVER_ANSWERED: &str =
    "the last delivery never answered: the process died or hung past ack_wait";

/// Everything known about a failed message.
pub(crate) struct Failed<'a> {
    pub(crate) subject: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) payload: Bytes,
    pub(crate) reason: DlqReason,
    pub(crate) error: &'a str,
    pub(crate) handler: &'a str,
    pub(crate) durable: &'a str,
    pub(crate) attempts: u32,
    pub(crate) stream: &'a str,
    pub(crate) sequence: u64,
    /// When the original was stored: with the stream and sequence, what
    /// tells it from a message at the same place of a stream made again.
    pub(crate) published_at: SystemTime,
    pub(crate) failed_at: SystemTime,
}

impl<'a> Failed<'a> {
    /// A delivery whose handler failed for `reason` at `failed_at` (the
    /// app's clock): everything but the reason, the error and the time
    /// comes from the delivery itself, so the live loop and `TestApp`
    /// write the same letter.
    pub(crate) fn delivery(
        meta: &'a Meta,
        payload: Bytes,
        reason: DlqReason,
        error: &'a str,
        failed_at: SystemTime,
    ) -> Failed<'a> {
        let delivered = meta.delivered();
        Failed {
            subject: meta.subject(),
            headers: &meta.headers,
            payload,
            reason,
            error,
            handler: meta.handler,
            durable: &meta.durable,
            attempts: meta.attempt(),
            stream: &meta.stream,
            sequence: delivered.stream_sequence,
            published_at: delivered.published_at,
            failed_at,
        }
    }
}

/// `Jetwire-Dlq-Truncated`: the original payload's size in bytes, on a
/// letter whose payload was cut to fit the server's `max_payload`; the
/// original's stream and sequence say where the whole of it was stored.
pub const TRUNCATED: &str = "Jetwire-Dlq-Truncated";

/// `Jetwire-Dlq-Orig-`: an original `Nats-*` header (`Nats-Expected-*`,
/// `Nats-TTL`, `Nats-Rollup`, `Nats-Msg-Id`, ...) is kept under this prefix
/// instead of as itself, which would steer (and could fail) the letter's
/// own publish.
pub const ORIGINAL: &str = "Jetwire-Dlq-Orig-";

/// `letter` as the server will take it: whole when it fits `max_payload`
/// (headers and payload, as the client counts them), else with its payload
/// cut to fit and [`TRUNCATED`] saying how long it was. A letter the
/// server refuses would leave its original to be retried forever.
pub(crate) fn fit(mut letter: Outbound, max_payload: usize) -> Outbound {
    if wire_len(&letter.headers) + letter.payload.len() <= max_payload {
        return letter;
    }
    let original = letter.payload.len();
    letter
        .headers
        .insert(TRUNCATED, original.to_string().as_str());
    let room = max_payload.saturating_sub(wire_len(&letter.headers));
    letter.payload = letter.payload.slice(..room.min(original));
    letter
}

/// The bytes a header block takes on the wire: `NATS/1.0\r\n`, then
/// `<name>: <value>\r\n` for each value, then `\r\n`.
fn wire_len(headers: &HeaderMap) -> usize {
    let values: usize = headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values
                .iter()
                .map(|v| name.len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + values + 2
}

/// The original's headers, each `Nats-*` one kept as [`ORIGINAL`]`<name>`;
/// `Nats-Pin-Id` not at all: it names a pin of the delivery, not the message.
fn carried(original: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter() {
        let name: &str = name.as_ref();
        if name.eq_ignore_ascii_case(PIN_ID) {
            continue;
        }
        let control = name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("nats-"));
        for value in values {
            if control {
                headers.append(format!("{ORIGINAL}{name}"), value.as_str());
            } else {
                headers.append(name, value.as_str());
            }
        }
    }
    headers
}

/// The dead-letter message for `failed`.
pub(crate) fn letter(failed: Failed<'_>) -> Outbound {
    let mut headers = carried(failed.headers);
    if let Some(id) = failed.headers.get(MSG_ID) {
        headers.insert(MESSAGE_ID, id.as_str());
    }
    let id = letter_id(
        failed.stream,
        failed.sequence,
        failed.durable,
        failed.published_at,
    );
    headers.insert(MSG_ID, id.as_str());
    headers.insert(REASON, failed.reason.as_str());
    headers.insert(ERROR, text::bounded(failed.error, ERROR_MAX).as_str());
    headers.insert(HANDLER, failed.handler);
    headers.insert(ATTEMPTS, failed.attempts.to_string().as_str());
    headers.insert(STREAM, failed.stream);
    headers.insert(SEQUENCE, failed.sequence.to_string().as_str());
    headers.insert(FAILED_AT, rfc3339(failed.failed_at).as_str());
    // The letter continues the trace of the call that failed.
    trace::inject_current(&mut headers);
    Outbound {
        // A partition's letter is of the subject its message was
        // published to: filters on it find the letter, and a replay is
        // routed by the message's key again.
        subject: names::dlq_subject(crate::partition::delivered_subject(
            failed.durable,
            failed.subject,
        )),
        headers,
        payload: failed.payload,
    }
}

/// A letter's `Nats-Msg-Id`: `dlq:<stream>:<sequence>:<durable>:<stored>`,
/// the original's stored time in nanoseconds since 1970. The same failure
/// written twice (a crash between the copy and the term, the advisory
/// path racing a live replica) has the same id and is stored once; a
/// message at the same sequence of a stream made again is another
/// message, and its letter is stored too.
pub(crate) fn letter_id(stream: &str, sequence: u64, durable: &str, stored: SystemTime) -> String {
    format!("dlq:{stream}:{sequence}:{durable}:{}", unix_nanos(stored))
}

/// Nanoseconds since 1970.
pub(crate) fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_carries_everything() {
        let mut h = HeaderMap::new();
        h.insert(MSG_ID, "abc");
        h.insert("X-Custom", "1");
        let out = letter(Failed {
            subject: "queue.email",
            headers: &h,
            payload: Bytes::from_static(b"{}"),
            reason: DlqReason::Decode,
            error: "bad\r\njson",
            handler: "send_email",
            durable: "queue_email",
            attempts: 1,
            stream: "QUEUE",
            sequence: 42,
            published_at: SystemTime::UNIX_EPOCH,
            failed_at: SystemTime::UNIX_EPOCH,
        });
        assert_eq!(out.subject, "dlq.queue.email");
        let get = |k: &str| out.headers.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(get(MSG_ID).as_deref(), Some("dlq:QUEUE:42:queue_email:0"));
        assert_eq!(get(MESSAGE_ID).as_deref(), Some("abc"));
        assert_eq!(get("X-Custom").as_deref(), Some("1"));
        assert_eq!(get(REASON).as_deref(), Some("decode"));
        assert_eq!(get(ERROR).as_deref(), Some("bad  json"));
        assert_eq!(get(ATTEMPTS).as_deref(), Some("1"));
        assert_eq!(get(SEQUENCE).as_deref(), Some("42"));
        assert_eq!(get(FAILED_AT).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(&out.payload[..], b"{}");
    }

    #[test]
    fn a_letter_too_large_for_the_server_is_cut_to_fit() {
        let h = HeaderMap::new();
        let failed = |payload: Bytes| Failed {
            subject: "queue.big",
            headers: &h,
            payload,
            reason: DlqReason::Permanent,
            error: "too big",
            handler: "h",
            durable: "d",
            attempts: 1,
            stream: "QUEUE",
            sequence: 9,
            published_at: SystemTime::UNIX_EPOCH,
            failed_at: SystemTime::UNIX_EPOCH,
        };
        let max = 4096;
        let small = fit(letter(failed(Bytes::from(vec![b'x'; 100]))), max);
        assert_eq!(small.payload.len(), 100);
        assert!(small.headers.get(TRUNCATED).is_none());
        let big = fit(letter(failed(Bytes::from(vec![b'x'; max]))), max);
        assert_eq!(big.headers.get(TRUNCATED).map(|v| v.as_str()), Some("4096"));
        assert_eq!(wire_len(&big.headers) + big.payload.len(), max);
        assert!(big.payload.iter().all(|b| *b == b'x'));
        assert_eq!(big.headers.get(SEQUENCE).map(|v| v.as_str()), Some("9"));
    }

    #[test]
    fn control_headers_are_kept_under_another_name() {
        let mut h = HeaderMap::new();
        h.insert(MSG_ID, "abc");
        for (name, value) in [
            ("Nats-Expected-Stream", "QUEUE"),
            ("Nats-Expected-Last-Sequence", "41"),
            ("Nats-Expected-Last-Subject-Sequence", "40"),
            ("Nats-Expected-Last-Msg-Id", "prev"),
            ("Nats-TTL", "1m"),
            ("Nats-Rollup", "sub"),
            ("nats-expected-stream", "lower"),
        ] {
            h.insert(name, value);
        }
        let out = letter(Failed {
            subject: "queue.email",
            headers: &h,
            payload: Bytes::new(),
            reason: DlqReason::Permanent,
            error: "",
            handler: "h",
            durable: "d",
            attempts: 1,
            stream: "QUEUE",
            sequence: 42,
            published_at: SystemTime::UNIX_EPOCH,
            failed_at: SystemTime::UNIX_EPOCH,
        });
        let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_ref()).collect();
        for name in &names {
            assert!(
                !name.to_ascii_lowercase().starts_with("nats-") || *name == MSG_ID,
                "{name} copied as itself: {names:?}"
            );
        }
        let get = |k: &str| out.headers.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(get(MSG_ID).as_deref(), Some("dlq:QUEUE:42:d:0"));
        assert_eq!(get("Jetwire-Dlq-Orig-Nats-Msg-Id").as_deref(), Some("abc"));
        assert_eq!(
            get("Jetwire-Dlq-Orig-Nats-Expected-Stream").as_deref(),
            Some("QUEUE")
        );
        assert_eq!(get("Jetwire-Dlq-Orig-Nats-TTL").as_deref(), Some("1m"));
        assert_eq!(get("Jetwire-Dlq-Orig-Nats-Rollup").as_deref(), Some("sub"));
        assert_eq!(
            get("Jetwire-Dlq-Orig-nats-expected-stream").as_deref(),
            Some("lower")
        );
        assert_eq!(get(MESSAGE_ID).as_deref(), Some("abc"));
    }
}
