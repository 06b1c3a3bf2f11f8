//! [`SubjectError`]: why a subject was refused, what to write instead, and
//! where in the subject the mistake is.

use std::fmt;

use super::{MAX_LEN, MAX_TOKENS, QUEUE_TOKEN, describe_char};

/// Why a subject was refused. `Display` names the rule and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is the empty string.
    Empty,
    /// The subject is longer than [`MAX_LEN`] bytes.
    TooLong {
        /// The subject as given.
        subject: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The subject has more than [`MAX_TOKENS`] tokens.
    TooManyTokens {
        /// The subject as given.
        subject: String,
        /// How many tokens it has.
        count: usize,
    },
    /// A token is empty: a leading, trailing or doubled `.`.
    EmptyToken {
        /// The subject as given.
        subject: String,
        /// 1-based position of the empty token.
        position: usize,
        /// How many tokens the subject has.
        count: usize,
    },
    /// A token holds a character outside ASCII letters, digits, `-`, `_`.
    InvalidChar {
        /// The subject as given.
        subject: String,
        /// The token holding it.
        token: String,
        /// The offending character.
        ch: char,
    },
    /// `*` or `>` stands inside a token instead of being the whole token.
    WildcardInToken {
        /// The subject as given.
        subject: String,
        /// The token holding it.
        token: String,
    },
    /// `>` is followed by further tokens.
    TailWildcardNotLast {
        /// The subject as given.
        subject: String,
    },
    /// A wildcard in a subject that is published to.
    WildcardInPublish {
        /// The subject as given.
        subject: String,
    },
    /// An event subject that starts with a wildcard.
    LeadingWildcard {
        /// The subject as given.
        subject: String,
    },
    /// An event subject that starts with `queue` or `dlq`.
    Reserved {
        /// The subject as given.
        subject: String,
        /// The reserved first token.
        token: &'static str,
    },
    /// A work-queue subject that does not start with `queue`.
    NotInQueueNamespace {
        /// The subject as given.
        subject: String,
    },
    /// A dead-letter handler's subject outside `dlq.`.
    NotDeadLetters {
        /// The subject as given.
        subject: String,
    },
    /// A work-queue subject with no token after `queue`.
    QueueTooShort {
        /// The subject as given.
        subject: String,
    },
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::Empty => f.write_str(
                "subject is empty: write tokens separated by `.`, e.g. `orders.created`",
            ),
            SubjectError::TooLong { subject, len } => write!(
                f,
                "subject `{}…` is {len} bytes long; the limit is {MAX_LEN}: use fewer or shorter tokens",
                truncate(subject)
            ),
            SubjectError::TooManyTokens { subject, count } => write!(
                f,
                "subject `{subject}` has {count} tokens; the limit is {MAX_TOKENS}: use fewer tokens"
            ),
            SubjectError::EmptyToken {
                subject,
                position,
                count,
            } => {
                let fix = if *position == 1 {
                    "remove the leading `.`"
                } else if position == count {
                    "remove the trailing `.`"
                } else {
                    "remove the doubled `.`"
                };
                write!(f, "token {position} of `{subject}` is empty: {fix}")
            }
            SubjectError::InvalidChar { subject, token, ch } => {
                let shown = describe_char(*ch);
                write!(
                    f,
                    "token `{}` of subject `{}` contains {shown}; tokens may only use ASCII letters, digits, `-` and `_`",
                    token.escape_debug(),
                    subject.escape_debug()
                )
            }
            SubjectError::WildcardInToken { subject, token } => write!(
                f,
                "token `{token}` of `{subject}` mixes a wildcard with other characters; `*` and `>` must be a whole token, e.g. `orders.*`"
            ),
            SubjectError::TailWildcardNotLast { subject } => write!(
                f,
                "`>` in `{subject}` is not the last token; `>` matches the rest of a subject, so it must end it: use `*` for a single token"
            ),
            SubjectError::WildcardInPublish { subject } => write!(
                f,
                "cannot publish to `{subject}`: a published subject names one concrete subject, without `*` or `>`"
            ),
            SubjectError::LeadingWildcard { subject } => write!(
                f,
                "event subject `{subject}` starts with a wildcard; start it with a literal token such as `orders`: the event stream is named after it, and a wildcard would reach into the reserved `queue` and `dlq` subjects"
            ),
            SubjectError::Reserved { subject, token } => {
                if *token == QUEUE_TOKEN {
                    write!(
                        f,
                        "event subject `{subject}` starts with `queue`, which is reserved for work queues: use #[queue(\"{subject}\")] for a work queue, or rename the subject"
                    )
                } else {
                    write!(
                        f,
                        "subject `{subject}` starts with `dlq`, which is reserved for dead letters (jetwire writes them): rename the subject, or, to handle dead letters, take `jetwire::dlq::DeadLetter` as the payload"
                    )
                }
            }
            SubjectError::NotInQueueNamespace { subject } => write!(
                f,
                "work-queue subject `{subject}` must start with `queue.`, e.g. `queue.{}`, unless it names an existing work-queue stream with `stream = \"..\"`; use #[subscribe] for events",
                subject.trim_start_matches(['.', '*', '>'])
            ),
            SubjectError::NotDeadLetters { subject } => write!(
                f,
                "a handler taking `DeadLetter` reads dead letters, whose subjects start with `dlq.`: write #[subscribe(\"dlq.>\")] for every letter, or `dlq.<subject>` for one subject's, not `{subject}`"
            ),
            SubjectError::QueueTooShort { subject } => write!(
                f,
                "work-queue subject `{subject}` names no queue: add a token after `queue`, e.g. `queue.email`"
            ),
        }
    }
}

impl SubjectError {
    /// Where in the subject the mistake is, as a byte range: the offending
    /// character, token or `.`; `None` when it is the whole subject (empty,
    /// too long, too many tokens, `queue` alone).
    ///
    /// ```
    /// use jetwire_grammar::subject::{check, Usage};
    ///
    /// let err = check("orders.$x", Usage::Publish).unwrap_err();
    /// assert_eq!(err.location(), Some(7..8)); // the `$`
    /// let err = check("orders..created", Usage::Publish).unwrap_err();
    /// assert_eq!(err.location(), Some(7..8)); // the second `.`
    /// ```
    pub fn location(&self) -> Option<std::ops::Range<usize>> {
        let subject = match self {
            SubjectError::Empty
            | SubjectError::TooLong { .. }
            | SubjectError::TooManyTokens { .. }
            | SubjectError::QueueTooShort { .. } => return None,
            SubjectError::EmptyToken { subject, .. }
            | SubjectError::InvalidChar { subject, .. }
            | SubjectError::WildcardInToken { subject, .. }
            | SubjectError::TailWildcardNotLast { subject }
            | SubjectError::WildcardInPublish { subject }
            | SubjectError::LeadingWildcard { subject }
            | SubjectError::Reserved { subject, .. }
            | SubjectError::NotInQueueNamespace { subject }
            | SubjectError::NotDeadLetters { subject } => subject,
        };
        let mut tokens = tokens_at(subject);
        let (at, token) = match self {
            SubjectError::EmptyToken {
                position, count, ..
            } => {
                let (at, _) = tokens.nth(position.checked_sub(1)?)?;
                // An empty token has no width: point at the `.` that makes
                // it, the one after it unless it is the last.
                return Some(if position < count {
                    at..at + 1
                } else {
                    at - 1..at
                });
            }
            SubjectError::InvalidChar { token, ch, .. } => {
                let (at, _) = tokens.find(|(_, t)| t == token)?;
                let offset = token.find(*ch)?;
                return Some(at + offset..at + offset + ch.len_utf8());
            }
            SubjectError::WildcardInToken { token, .. } => tokens.find(|(_, t)| t == token)?,
            SubjectError::TailWildcardNotLast { .. } => tokens.find(|(_, t)| *t == ">")?,
            SubjectError::WildcardInPublish { .. } => {
                tokens.find(|(_, t)| *t == "*" || *t == ">")?
            }
            _ => tokens.next()?,
        };
        Some(at..at + token.len())
    }
}

/// Each token of `subject` with its byte offset.
fn tokens_at(subject: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    subject.split('.').map(move |token| {
        let start = at;
        at += token.len() + 1;
        (start, token)
    })
}

impl std::error::Error for SubjectError {}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use crate::subject::{Usage, check};

    #[test]
    fn locations_point_at_the_mistake() {
        fn at(subject: &str, usage: Usage) -> Option<&str> {
            let err = check(subject, usage).expect_err(subject);
            err.location().map(|r| &subject[r])
        }
        assert_eq!(at(".orders", Usage::Publish), Some("."));
        assert_eq!(at("orders.", Usage::Publish), Some("."));
        assert_eq!(at("a.b..c", Usage::Publish), Some("."));
        assert_eq!(
            check("a.b..c", Usage::Publish)
                .expect_err("a doubled dot")
                .location(),
            Some(4..5)
        );
        assert_eq!(at("orders.créé", Usage::Publish), Some("é"));
        assert_eq!(at("orders.a*", Usage::Subscribe), Some("a*"));
        assert_eq!(at("orders.>.x", Usage::Subscribe), Some(">"));
        assert_eq!(at("orders.*", Usage::Publish), Some("*"));
        assert_eq!(at("*.x", Usage::Subscribe), Some("*"));
        assert_eq!(at("dlq.x", Usage::Subscribe), Some("dlq"));
        assert_eq!(at("email.x", Usage::Queue), Some("email"));
        assert_eq!(at("queue", Usage::Queue), None);
        assert_eq!(at("", Usage::Publish), None);
    }
}
