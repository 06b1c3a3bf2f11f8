//! Every option key, once: its name as written in the attribute (and as
//! the field of the runtime's `Settings` it fills), and which
//! attributes take it. Validation and expansion both match on [`Key`], so
//! the compiler checks that each handles every key.

use crate::attr::Kind;

/// An option key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    MaxDeliver,
    Backoff,
    AckWait,
    Concurrency,
    Timeout,
    Deliver,
    Durable,
    Stream,
    Output,
    Singleton,
    Partitions,
    Ack,
    Bind,
}

impl Key {
    /// Every key, in the order error messages list them.
    pub(crate) const ALL: [Key; 13] = [
        Key::MaxDeliver,
        Key::Backoff,
        Key::AckWait,
        Key::Concurrency,
        Key::Timeout,
        Key::Deliver,
        Key::Durable,
        Key::Stream,
        Key::Output,
        Key::Singleton,
        Key::Partitions,
        Key::Ack,
        Key::Bind,
    ];

    /// The key as written, and the `Settings` field it fills.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::MaxDeliver => "max_deliver",
            Key::Backoff => "backoff",
            Key::AckWait => "ack_wait",
            Key::Concurrency => "concurrency",
            Key::Timeout => "timeout",
            Key::Deliver => "deliver",
            Key::Durable => "durable",
            Key::Stream => "stream",
            Key::Output => "output",
            Key::Singleton => "singleton",
            Key::Partitions => "partitions",
            Key::Ack => "ack",
            Key::Bind => "bind",
        }
    }

    /// The one attribute that takes it, if not both.
    pub(crate) fn only(self) -> Option<Kind> {
        match self {
            Key::Deliver | Key::Durable => Some(Kind::Subscribe),
            Key::MaxDeliver
            | Key::Backoff
            | Key::AckWait
            | Key::Concurrency
            | Key::Timeout
            | Key::Stream
            | Key::Output
            | Key::Singleton
            | Key::Partitions
            | Key::Ack
            | Key::Bind => None,
        }
    }

    /// The key named `name`.
    pub(crate) fn named(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The keys `kind` takes.
    pub(crate) fn of(kind: Kind) -> impl Iterator<Item = Key> {
        Key::ALL
            .into_iter()
            .filter(move |k| k.only().is_none_or(|only| only == kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once_and_found_by_name() {
        for (i, key) in Key::ALL.into_iter().enumerate() {
            assert_eq!(Key::named(key.name()), Some(key));
            assert!(!Key::ALL[..i].contains(&key), "{key:?} listed twice");
        }
        assert_eq!(Key::of(Kind::Queue).count(), 11);
        assert_eq!(Key::of(Kind::Subscribe).count(), 13);
    }
}
