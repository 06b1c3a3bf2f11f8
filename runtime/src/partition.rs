//! Partitions, as pure functions: which partition a key falls in, the
//! subject and durable of each partition, which replica owns it, and the
//! stream metadata that tells publishers a subject is partitioned.
//!
//! A handler with `partitions = N` on subject `S` reads `N` partition
//! subjects `S._p0` .. `S._p{N-1}`, each through a durable of its own
//! (`<durable>-p<i>`) that delivers one message at a time to one pinned
//! replica. A keyed publish to `S` goes to `S._p<i>`, where
//! `i = fnv1a32(key) % N` ([`partition_of`]); a publisher learns `N` from
//! the metadata entry `jetwire.partitions.<S>` of the stream that captures
//! `S`. A message without a key stays on `S` and is read by the handler's
//! own durable, in no particular order.
//!
//! ```
//! use jetwire::topology::{partition_of, partition_subject};
//!
//! let i = partition_of("order-42", 8);
//! assert!(i < 8);
//! assert_eq!(partition_of("order-42", 8), i); // the same key, the same partition
//! assert_eq!(partition_subject("queue.orders", 3), "queue.orders._p3");
//! ```

/// The prefix of the stream metadata keys that record a partitioned
/// subject: `jetwire.partitions.<subject>` = the number of partitions.
pub(crate) const METADATA_PREFIX: &str = "jetwire.partitions.";

/// The most partitions a handler may have.
pub(crate) const MAX_PARTITIONS: u32 = 256;

/// The partition, of `partitions`, that `key` falls in: FNV-1a (32 bit)
/// of the key's UTF-8 bytes, modulo `partitions`. Publishers in other
/// languages compute the same to publish to `<subject>._p<i>` themselves.
///
/// ```
/// assert_eq!(jetwire::topology::partition_of("a", 1), 0);
/// assert_eq!(jetwire::topology::partition_of("", 7), 2166136261 % 7);
/// ```
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// The subject partition `index` of `subject` is published to and read
/// from: `<subject>._p<index>`.
///
/// ```
/// assert_eq!(jetwire::topology::partition_subject("queue.orders", 0), "queue.orders._p0");
/// ```
pub fn partition_subject(subject: &str, index: u32) -> String {
    format!("{subject}._p{index}")
}

/// The durable that reads partition `index` of a handler whose own
/// durable is `durable`: `<durable>-p<index>`.
///
/// ```
/// assert_eq!(jetwire::topology::partition_durable("queue_orders", 7), "queue_orders-p7");
/// ```
pub fn partition_durable(durable: &str, index: u32) -> String {
    format!("{durable}-p{index}")
}

/// The stream metadata key that records `subject` (prefixed, as the
/// server has it) as partitioned.
pub(crate) fn metadata_key(subject: &str) -> String {
    format!("{METADATA_PREFIX}{subject}")
}

/// The partition count the stream `metadata` records for the concrete
/// subject `subject`: of the entries whose subject pattern matches it, the
/// one with the least key, so every publisher reads the same whatever
/// order the metadata comes in (startup refuses overlapping patterns with
/// different counts).
pub(crate) fn recorded<'a>(
    metadata: impl IntoIterator<Item = (&'a String, &'a String)>,
    subject: &str,
) -> Option<u32> {
    metadata
        .into_iter()
        .filter_map(|(key, value)| {
            let pattern = key.strip_prefix(METADATA_PREFIX)?;
            if !jetwire_grammar::subject::matches(pattern, subject) {
                return None;
            }
            let n = value
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PARTITIONS).contains(n))?;
            Some((key, n))
        })
        .min_by(|a, b| a.0.cmp(b.0))
        .map(|(_, n)| n)
}

/// Whether a handler on `pattern` with `partitions` reads a message to
/// `subject` carrying `key`, and if so in which partition (`None`: its own
/// durable, no order) and on which subject: a keyed message goes to its
/// key's partition, and one published to a partition subject stays there.
pub(crate) fn delivery(
    pattern: &str,
    partitions: Option<u32>,
    subject: &str,
    key: Option<&str>,
) -> Option<(Option<u32>, String)> {
    use jetwire_grammar::subject::matches;
    let Some(n) = partitions else {
        return matches(pattern, subject).then(|| (None, subject.to_owned()));
    };
    if matches(pattern, subject) {
        return Some(match key {
            Some(key) => {
                let index = partition_of(key, n);
                (Some(index), partition_subject(subject, index))
            }
            None => (None, subject.to_owned()),
        });
    }
    let (rest, last) = subject.rsplit_once('.')?;
    let index: u32 = last.strip_prefix("_p")?.parse().ok()?;
    (index < n && matches(pattern, rest)).then(|| (Some(index), subject.to_owned()))
}

/// The subject a partition subject `<subject>._p<i>` stands for; none for
/// a subject that is not one.
pub(crate) fn unpartitioned(subject: &str) -> Option<&str> {
    let (rest, last) = subject.rsplit_once('.')?;
    let digits = last.strip_prefix("_p")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(rest)
}

/// The subject a delivery through `durable` on `subject` is of: for a
/// partition durable (`<durable>-p<i>`) reading its partition subject
/// (`<subject>._p<i>`), the subject the message was published to; else
/// `subject` itself. Dead letters are stored under it, so an operator's
/// subject filter finds them and a replay is routed by its key again.
pub(crate) fn delivered_subject<'a>(durable: &str, subject: &'a str) -> &'a str {
    let Some(rest) = unpartitioned(subject) else {
        return subject;
    };
    let index = &subject[rest.len() + 3..];
    match durable.rsplit_once("-p") {
        Some((_, i)) if i == index => rest,
        _ => subject,
    }
}

/// The member that owns partition `index` of `durable`: the one with the
/// highest weight for it (rendezvous hashing). Every replica computes the
/// same from the same members, and a member leaving moves only its own
/// partitions. `None` without members.
pub(crate) fn owner<'a>(members: &'a [String], durable: &str, index: u32) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (weight(m, durable, index), m.as_str()))
        .map(String::as_str)
}

/// A well-mixed 64-bit weight of (member, durable, partition): FNV-1a
/// over the three, then the SplitMix64 finaliser.
fn weight(member: &str, durable: &str, index: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let index = index.to_le_bytes();
    let bytes = member
        .as_bytes()
        .iter()
        .chain(&[0])
        .chain(durable.as_bytes())
        .chain(&[0])
        .chain(&index);
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn a_partition_delivery_is_of_the_subject_it_was_published_to() {
        use super::{delivered_subject, unpartitioned};
        assert_eq!(delivered_subject("q-p3", "queue.o._p3"), "queue.o");
        assert_eq!(delivered_subject("q-p3", "queue.o._p4"), "queue.o._p4");
        assert_eq!(delivered_subject("q", "queue.o._p3"), "queue.o._p3");
        assert_eq!(delivered_subject("q-p3", "queue.o"), "queue.o");
        assert_eq!(unpartitioned("a._p12"), Some("a"));
        assert_eq!(unpartitioned("a._p"), None);
        assert_eq!(unpartitioned("a._px"), None);
    }

    use super::*;

    #[test]
    fn keys_spread_over_partitions_and_stay_put() {
        let mut counts = [0u32; 8];
        for k in 0..8000 {
            let key = format!("order-{k}");
            let p = partition_of(&key, 8);
            assert_eq!(p, partition_of(&key, 8));
            counts[p as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        // FNV-1a 32 of "a" is 0xe40c292c: the published algorithm.
        assert_eq!(partition_of("a", u32::MAX), 0xe40c_292c);
    }

    #[test]
    fn metadata_names_the_partitioned_subjects() {
        let metadata: HashMap<String, String> = [
            (metadata_key("queue.orders"), "8".to_owned()),
            (metadata_key("orders.*.eu"), "4".to_owned()),
            (metadata_key("queue.broken"), "0".to_owned()),
            ("other".to_owned(), "3".to_owned()),
        ]
        .into();
        assert_eq!(recorded(&metadata, "queue.orders"), Some(8));
        assert_eq!(recorded(&metadata, "orders.created.eu"), Some(4));
        assert_eq!(recorded(&metadata, "queue.orders.x"), None);
        assert_eq!(recorded(&metadata, "queue.broken"), None);
        assert_eq!(recorded(&metadata, "other"), None);
    }

    #[test]
    fn a_handler_reads_keyed_messages_in_their_partition() {
        let p = partition_of("k", 4);
        assert_eq!(
            delivery("queue.o", Some(4), "queue.o", Some("k")),
            Some((Some(p), format!("queue.o._p{p}")))
        );
        assert_eq!(
            delivery("queue.o", Some(4), "queue.o", None),
            Some((None, "queue.o".to_owned()))
        );
        assert_eq!(
            delivery("queue.o", Some(4), "queue.o._p3", Some("k")),
            Some((Some(3), "queue.o._p3".to_owned()))
        );
        assert_eq!(delivery("queue.o", Some(4), "queue.o._p4", None), None);
        assert_eq!(delivery("queue.o", Some(4), "queue.x", Some("k")), None);
        assert_eq!(
            delivery("queue.*", None, "queue.o", Some("k")),
            Some((None, "queue.o".to_owned()))
        );
    }

    #[test]
    fn owners_are_agreed_spread_and_move_only_when_their_member_goes() {
        let members: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let owners: Vec<&str> = (0..64)
            .map(|i| owner(&members, "d", i).expect("members"))
            .collect();
        for m in &members {
            let n = owners.iter().filter(|o| **o == m).count();
            assert!((10..=35).contains(&n), "{m} owns {n} of 64");
        }
        let without_b: Vec<String> = ["c", "a"].map(String::from).to_vec();
        for (i, before) in owners.iter().enumerate() {
            let after = owner(&without_b, "d", i as u32).expect("members");
            if *before != "b" {
                assert_eq!(
                    after, *before,
                    "partition {i} moved though its owner stayed"
                );
            }
        }
        assert_eq!(owner(&[], "d", 0), None);
    }
}
