//! Fast batch publishing (NATS 2.14+), as the server speaks it: a batch
//! is told by each message's reply subject,
//! `<inbox>.<batch id>.<flow>.<gap mode>.<batch sequence>.<operation>.$FI`,
//! and the server answers on those subjects with flow acks (every
//! `msgs` messages stored, in order), reports of gaps and errors, and one
//! publish ack when the batch is committed. Pure: no I/O.

use serde::Deserialize;

/// What a message does in its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// The first message: opens the batch.
    Start = 0,
    /// Any other but the last.
    Append = 1,
    /// The last: stored, and ends the batch.
    Commit = 2,
    /// Ends the batch without being stored (after a failure).
    CommitEob = 3,
    /// Asks for the latest flow ack again.
    Ping = 4,
}

/// The server's largest flow: an ack at least every this many messages.
pub(crate) const MAX_FLOW: u16 = 500;

/// The reply subject of message `seq` (from 1) of batch `id`, whose acks
/// come on `inbox.>`. Gaps fail the batch: what is acked was stored
/// without a hole.
pub(crate) fn reply(inbox: &str, id: &str, seq: u64, op: Op) -> String {
    format!("{inbox}.{id}.{MAX_FLOW}.fail.{seq}.{}.$FI", op as u8)
}

/// The batch sequence a reply subject made by [`reply`] was for.
pub(crate) fn sequence_of(subject: &str) -> Option<u64> {
    let rest = subject.strip_suffix(".$FI")?;
    let mut tokens = rest.rsplit('.');
    let _op = tokens.next()?;
    tokens.next()?.parse().ok()
}

/// One answer of the server's to a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Every message up to `seq` is stored; acks come every `msgs` now.
    Flow { seq: u64, msgs: u16 },
    /// Message `expected` never arrived (the batch ends before it).
    Gap { expected: u64 },
    /// Message `seq` was refused (the batch ends before it).
    Refused {
        seq: Option<u64>,
        code: Option<u64>,
        description: String,
    },
    /// The batch is committed: `count` messages, the last stored at
    /// `sequence` of `stream`.
    Committed {
        stream: String,
        sequence: u64,
        count: u64,
    },
    /// Something else: not from a server that speaks fast batches.
    Unreadable,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: Option<String>,
    seq: Option<u64>,
    msgs: Option<u16>,
    last_seq: Option<u64>,
    stream: Option<String>,
    count: Option<u64>,
    batch: Option<String>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    err_code: Option<u64>,
    description: Option<String>,
}

/// Reads one answer, which came on `subject` (a reply subject of the
/// batch) with `body`.
pub(crate) fn read(subject: &str, body: &[u8]) -> Answer {
    let Ok(wire) = serde_json::from_slice::<Wire>(body) else {
        return Answer::Unreadable;
    };
    let refused = |error: ApiError, seq: Option<u64>| Answer::Refused {
        seq,
        code: error.err_code,
        description: crate::text::bounded(error.description.as_deref().unwrap_or("no reason"), 256),
    };
    match (wire.kind.as_deref(), wire.error) {
        (Some("ack"), None) => match (wire.seq, wire.msgs) {
            (Some(seq), Some(msgs)) => Answer::Flow { seq, msgs },
            _ => Answer::Unreadable,
        },
        (Some("gap"), None) => wire
            .last_seq
            .map_or(Answer::Unreadable, |expected| Answer::Gap { expected }),
        (Some("err"), Some(error)) => refused(error, wire.seq),
        // A publish ack: of the batch's commit, or the refusal of one
        // message (its sequence is in the subject it answers).
        (None, Some(error)) => refused(error, sequence_of(subject)),
        (None, None) => match (wire.stream, wire.seq, wire.count, wire.batch) {
            (Some(stream), Some(sequence), Some(count), Some(_)) => Answer::Committed {
                stream,
                sequence,
                count,
            },
            _ => Answer::Unreadable,
        },
        _ => Answer::Unreadable,
    }
}

/// JetStream's code for a stream that does not allow fast batches.
pub(crate) const NOT_ENABLED: u64 = 10205;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_carry_the_sequence_the_server_reads() {
        let r = reply("_INBOX.abc", "b1", 7, Op::Append);
        assert_eq!(r, "_INBOX.abc.b1.500.fail.7.1.$FI");
        assert_eq!(sequence_of(&r), Some(7));
        assert_eq!(sequence_of("_INBOX.abc.b1.500.fail.7.1"), None);
        assert_eq!(sequence_of("$FI"), None);
    }

    #[test]
    fn answers_as_the_server_writes_them() {
        let s = "_INBOX.a.b.500.fail.3.1.$FI";
        assert_eq!(
            read(s, br#"{"type":"ack","seq":100,"msgs":50}"#),
            Answer::Flow { seq: 100, msgs: 50 }
        );
        assert_eq!(
            read(s, br#"{"type":"gap","last_seq":4,"seq":6}"#),
            Answer::Gap { expected: 4 }
        );
        assert_eq!(
            read(
                s,
                br#"{"type":"err","seq":5,"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#
            ),
            Answer::Refused {
                seq: Some(5),
                code: Some(10054),
                description: "message size exceeds maximum allowed".into()
            }
        );
        assert_eq!(
            read(
                s,
                br#"{"error":{"code":400,"err_code":10205,"description":"batch publish is disabled"},"stream":"S"}"#
            ),
            Answer::Refused {
                seq: Some(3),
                code: Some(NOT_ENABLED),
                description: "batch publish is disabled".into()
            }
        );
        assert_eq!(
            read(s, br#"{"stream":"S","seq":42,"batch":"b","count":3}"#),
            Answer::Committed {
                stream: "S".into(),
                sequence: 42,
                count: 3
            }
        );
        for hostile in [
            &b""[..],
            b"{}",
            b"[1]",
            br#"{"type":"ack"}"#,
            br#"{"stream":"S","seq":1}"#,
        ] {
            assert_eq!(read(s, hostile), Answer::Unreadable);
        }
    }
}
