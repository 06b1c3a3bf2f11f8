//! [`Entry`] and [`Row`]: a message as the outbox keeps it, before and
//! after a relay claims it. A [`Store`](crate::outbox::Store) of any
//! database holds these fields and nothing else.

use jetwire::PublishOptions;
use jetwire::codec::Encode;
use jetwire::publish::Message;

use crate::error::OutboxError;
use crate::outbox::DESTINATION;
use crate::wire::header_pairs;

/// An entry's fields, in the order of the outbox table's columns: id,
/// subject, key, destination, headers, payload.
pub(crate) type Parts = (
    String,
    String,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
    Vec<u8>,
);

/// A message saved to the outbox: checked exactly as a publish is
/// (subject, encoding, headers) when it is made, so a bad one is an error
/// before anything is written. Its `Jetwire-Destination` header, if any,
/// is taken off into [`Entry::destination`].
///
/// ```
/// use jetwire::PublishOptions;
/// use jetwire_sql::outbox::Entry;
///
/// let entry = Entry::json("orders.created", &42, PublishOptions::new().key("order-42"))?;
/// assert_eq!(entry.subject(), "orders.created");
/// assert_eq!(entry.key(), Some("order-42"));
/// assert_eq!(entry.payload(), b"42");
/// assert!(!entry.id().is_empty(), "the message id a relay publishes it under");
/// # Ok::<(), jetwire_sql::OutboxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    id: String,
    subject: String,
    key: Option<String>,
    destination: Option<String>,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Entry {
    /// `payload` as JSON (or in its codec) to `subject`.
    pub fn json<T: Encode + ?Sized>(
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Result<Entry, OutboxError> {
        Ok(Entry::from(Message::json(subject, payload, options)?))
    }

    /// Bytes as they are (no JSON, no content type) to `subject`.
    pub fn raw(
        subject: &str,
        payload: impl Into<bytes::Bytes>,
        options: PublishOptions,
    ) -> Result<Entry, OutboxError> {
        Ok(Entry::from(Message::raw(subject, payload, options)?))
    }

    /// The message's id: its `Nats-Msg-Id` when published.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The subject it is published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// Its key (`Jetwire-Key`): entries of one key go in the order saved.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// The destination it names (`Jetwire-Destination`), taken off its
    /// headers.
    pub fn destination(&self) -> Option<&str> {
        self.destination.as_deref()
    }
    /// Its headers, `Nats-Msg-Id` and `Jetwire-Key` among them, sorted by
    /// name (a repeated header keeps the order of its values).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    /// One header's first value, its name compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The payload's bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// An entry as a store read it back: the fields it was saved with.
    pub fn from_parts(
        id: String,
        subject: String,
        key: Option<String>,
        destination: Option<String>,
        headers: Vec<(String, String)>,
        payload: Vec<u8>,
    ) -> Entry {
        Entry {
            id,
            subject,
            key,
            destination,
            headers,
            payload,
        }
    }

    pub(crate) fn into_parts(self) -> Parts {
        (
            self.id,
            self.subject,
            self.key,
            self.destination,
            self.headers,
            self.payload,
        )
    }
}

impl From<Message> for Entry {
    fn from(mut message: Message) -> Entry {
        let destination = message.header(DESTINATION).map(str::to_owned);
        if destination.is_some() {
            message.remove_header(DESTINATION);
        }
        let headers = header_pairs(message.headers());
        Entry {
            id: message.message_id().map(str::to_owned).unwrap_or_default(),
            subject: message.subject().to_owned(),
            key: message.header(jetwire::publish::KEY).map(str::to_owned),
            destination,
            headers,
            payload: message.payload().to_vec(),
        }
    }
}

/// An outbox row a relay claimed: its [`Entry`], its place in the
/// outbox's order, and the publishes that failed so far. What a
/// [`Router`](crate::outbox::Router) rule sees.
///
/// ```
/// use jetwire::PublishOptions;
/// use jetwire_sql::outbox::{Entry, Row};
///
/// let entry = Entry::json("audit.login", &"ann", PublishOptions::new().header("region", "eu"))?;
/// let row = Row::new(7, 0, entry);
/// assert_eq!((row.seq(), row.subject(), row.header("Region")), (7, "audit.login", Some("eu")));
/// # Ok::<(), jetwire_sql::OutboxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Row {
    seq: i64,
    attempts: u32,
    entry: Entry,
    unreadable: Option<String>,
}

impl Row {
    /// A claimed row: `seq` orders the outbox (later saves, higher seqs),
    /// `attempts` counts its failed publishes.
    pub fn new(seq: i64, attempts: u32, entry: Entry) -> Row {
        Row {
            seq,
            attempts,
            entry,
            unreadable: None,
        }
    }

    /// A row the store could not read back whole (its headers do not
    /// decode, say): the relay fails it with `why` instead of publishing.
    pub fn unreadable(seq: i64, attempts: u32, entry: Entry, why: impl Into<String>) -> Row {
        Row {
            unreadable: Some(why.into()),
            ..Row::new(seq, attempts, entry)
        }
    }

    /// Its place in the outbox's order.
    pub fn seq(&self) -> i64 {
        self.seq
    }
    /// Publishes of it that failed so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// What was saved.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
    /// The message id ([`Entry::id`]).
    pub fn id(&self) -> &str {
        self.entry.id()
    }
    /// The subject ([`Entry::subject`]).
    pub fn subject(&self) -> &str {
        self.entry.subject()
    }
    /// The key ([`Entry::key`]).
    pub fn key(&self) -> Option<&str> {
        self.entry.key()
    }
    /// The destination it names ([`Entry::destination`]).
    pub fn destination(&self) -> Option<&str> {
        self.entry.destination()
    }
    /// One header's first value ([`Entry::header`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.entry.header(name)
    }
    /// Every header ([`Entry::headers`]).
    pub fn headers(&self) -> &[(String, String)] {
        self.entry.headers()
    }

    pub(crate) fn problem(&self) -> Option<&str> {
        self.unreadable.as_deref()
    }
}
