//! What a JetStream delivery's reply subject says about it.
//!
//! Only the numbers jetwire uses are read, and only when first asked for:
//! a call that succeeds never needs them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "$JS.ACK.";

/// Whether `reply` is a JetStream ack subject.
pub(crate) fn is_jetstream(reply: &str) -> bool {
    reply.starts_with(PREFIX)
}

/// What a delivery's reply subject says about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Delivered {
    /// Which delivery this is, from 1, as the server counts them.
    pub(crate) deliveries: u32,
    pub(crate) stream_sequence: u64,
    /// When the server stored the message.
    pub(crate) published_at: SystemTime,
}

impl Delivered {
    /// Reads a `$JS.ACK.` reply subject, in either form of NATS ADR-15:
    /// `<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`,
    /// or the same preceded by `<domain>.<account hash>` and followed by
    /// more tokens. Only the three numbers jetwire uses are parsed.
    pub(crate) fn parse(reply: &str) -> Option<Delivered> {
        let rest = reply.strip_prefix(PREFIX)?.as_bytes();
        let mut tokens: [&[u8]; 9] = [&[]; 9];
        let mut n = 0;
        for token in rest.split(|b| *b == b'.') {
            if let Some(slot) = tokens.get_mut(n) {
                *slot = token;
            }
            n += 1;
        }
        let delivered_at = match n {
            7 => 2,
            n if n >= 9 => 4,
            _ => return None,
        };
        let number = |i: usize| decimal(tokens.get(i)?);
        Some(Delivered {
            deliveries: u32::try_from(number(delivered_at)?)
                .unwrap_or(u32::MAX)
                .max(1),
            stream_sequence: number(delivered_at + 1)?,
            published_at: UNIX_EPOCH + Duration::from_nanos(number(delivered_at + 3)?),
        })
    }
}

/// Whether `reply` is a first delivery's: the loop asks for every message,
/// so this reads only the one token, where [`Delivered::parse`] reads three.
pub(crate) fn is_first_delivery(reply: &str) -> bool {
    let Some(rest) = reply.strip_prefix(PREFIX) else {
        return false;
    };
    let at = match rest.bytes().filter(|b| *b == b'.').count() + 1 {
        7 => 2,
        n if n >= 9 => 4,
        _ => return false,
    };
    rest.split('.').nth(at) == Some("1")
}

/// An unsigned decimal of ASCII digits only.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_delivery_is_told_from_its_reply_alone() {
        assert!(is_first_delivery("$JS.ACK.S.c.1.7.3.1700000000000000000.0"));
        assert!(!is_first_delivery(
            "$JS.ACK.S.c.2.7.3.1700000000000000000.0"
        ));
        assert!(!is_first_delivery(
            "$JS.ACK.S.c.11.7.3.1700000000000000000.0"
        ));
        assert!(is_first_delivery(
            "$JS.ACK.dom.hash.S.c.1.7.3.1700000000000000000.0.x"
        ));
        assert!(!is_first_delivery(
            "$JS.ACK.dom.hash.S.c.3.7.3.1700000000000000000.0.x"
        ));
        assert!(!is_first_delivery("$JS.ACK.S.c.1"));
        assert!(!is_first_delivery("_INBOX.x"));
    }

    #[test]
    fn reply_subjects_in_both_forms() {
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        assert_eq!(
            Delivered::parse("$JS.ACK.ORDERS.app-on_order.3.42.40.1700000000123456789.7"),
            Some(Delivered {
                deliveries: 3,
                stream_sequence: 42,
                published_at: at(1_700_000_000_123_456_789),
            })
        );
        assert_eq!(
            Delivered::parse(
                "$JS.ACK.hub.ACCHASH.ORDERS.app-on_order.1.9.9.1700000000000000000.0.xyz"
            ),
            Some(Delivered {
                deliveries: 1,
                stream_sequence: 9,
                published_at: at(1_700_000_000_000_000_000),
            })
        );
        // Without the trailing token, and with more than one.
        assert!(Delivered::parse("$JS.ACK.hub.H.S.C.1.2.2.5.0").is_some());
        assert!(Delivered::parse("$JS.ACK.hub.H.S.C.1.2.2.5.0.t.u").is_some());
    }

    #[test]
    fn other_subjects_are_refused() {
        for reply in [
            "_INBOX.abc",
            "$JS.ACK.S.C.1.2.2",
            "$JS.ACK.S.C.x.2.2.5.0",
            "$JS.ACK.S.C.1.2.2.5.0.extra",
            "$JS.ACK.S.C.1.-2.2.5.0",
            "$JS.ACK.S.C.1.+2.2.5.0",
            "$JS.ACK.S.C.1..2.5.0",
            "$JS.ACK.S.C.1.2.2.99999999999999999999.0",
        ] {
            assert_eq!(Delivered::parse(reply), None, "{reply}");
        }
    }
}
