//! NATS subjects as jetwire accepts them.
//!
//! A subject is a list of tokens separated by `.`. Each token is made of ASCII
//! letters, digits, `-` and `_`, or is a wildcard: `*` matches one token, `>`
//! matches one or more tokens and may only stand last. A subject has at most
//! [`MAX_TOKENS`] tokens and [`MAX_LEN`] bytes.
//!
//! On top of that grammar, [`Usage`] adds the namespace rules: work-queue
//! subjects live under `queue.`, events may not start with the reserved
//! `queue` or `dlq` tokens (nor with a wildcard, which could reach into them),
//! and published subjects carry no wildcard.
//!
//! ```
//! use jetwire_grammar::subject::{check, matches, Usage};
//!
//! check("queue.email", Usage::Queue).unwrap();
//! assert!(check("email", Usage::Queue).is_err());
//! assert!(matches("orders.*", "orders.created"));
//! assert!(!matches("orders.*", "orders.created.eu"));
//! ```

use std::fmt;

/// The most tokens a subject may have.
pub const MAX_TOKENS: usize = 16;

/// The longest subject, in bytes.
pub const MAX_LEN: usize = 256;

/// The first token of every work-queue subject.
pub const QUEUE_TOKEN: &str = "queue";

/// The first token of every dead-letter subject.
pub const DLQ_TOKEN: &str = "dlq";

/// Where a subject is used; each use adds rules to the common grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// `#[subscribe]`: an event subject. Wildcards allowed, but not first;
    /// must not start with `queue` or `dlq`.
    Subscribe,
    /// `#[queue]`: a work-queue subject. Starts with `queue` and has at least
    /// two tokens; wildcards allowed after the first token.
    Queue,
    /// A subject a message is published to: no wildcards, any namespace.
    Publish,
}

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
                        "event subject `{subject}` starts with `dlq`, which is reserved for dead letters: rename the subject"
                    )
                }
            }
            SubjectError::NotInQueueNamespace { subject } => write!(
                f,
                "work-queue subject `{subject}` must start with `queue.`, e.g. `queue.{}`; use #[subscribe] for events",
                subject.trim_start_matches(['.', '*', '>'])
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
            | SubjectError::NotInQueueNamespace { subject } => subject,
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

/// Checks `subject` against the grammar and the rules of `usage`.
///
/// Returns the first rule broken, in this order: length, token count, each
/// token left to right, then the namespace rules.
///
/// ```
/// use jetwire_grammar::subject::{check, SubjectError, Usage};
///
/// assert!(check("orders.*.eu", Usage::Subscribe).is_ok());
/// assert!(matches!(
///     check("orders.>.eu", Usage::Subscribe),
///     Err(SubjectError::TailWildcardNotLast { .. })
/// ));
/// assert!(matches!(
///     check("orders.created", Usage::Queue),
///     Err(SubjectError::NotInQueueNamespace { .. })
/// ));
/// ```
pub fn check(subject: &str, usage: Usage) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.len() > MAX_LEN {
        return Err(SubjectError::TooLong {
            subject: subject.to_owned(),
            len: subject.len(),
        });
    }
    let count = subject.split('.').count();
    if count > MAX_TOKENS {
        return Err(SubjectError::TooManyTokens {
            subject: subject.to_owned(),
            count,
        });
    }
    for (i, token) in subject.split('.').enumerate() {
        let position = i + 1;
        if token.is_empty() {
            return Err(SubjectError::EmptyToken {
                subject: subject.to_owned(),
                position,
                count,
            });
        }
        match token {
            "*" | ">" => {
                if usage == Usage::Publish {
                    return Err(SubjectError::WildcardInPublish {
                        subject: subject.to_owned(),
                    });
                }
                if token == ">" && position != count {
                    return Err(SubjectError::TailWildcardNotLast {
                        subject: subject.to_owned(),
                    });
                }
            }
            _ => {
                if let Some(ch) = token.chars().find(|c| !is_token_char(*c)) {
                    if ch == '*' || ch == '>' {
                        return Err(SubjectError::WildcardInToken {
                            subject: subject.to_owned(),
                            token: token.to_owned(),
                        });
                    }
                    return Err(SubjectError::InvalidChar {
                        subject: subject.to_owned(),
                        token: token.to_owned(),
                        ch,
                    });
                }
            }
        }
    }
    let first = subject.split('.').next().unwrap_or_default();
    match usage {
        Usage::Publish => {}
        Usage::Subscribe => {
            if first == "*" || first == ">" {
                return Err(SubjectError::LeadingWildcard {
                    subject: subject.to_owned(),
                });
            }
            for reserved in [QUEUE_TOKEN, DLQ_TOKEN] {
                if first == reserved {
                    return Err(SubjectError::Reserved {
                        subject: subject.to_owned(),
                        token: reserved,
                    });
                }
            }
        }
        Usage::Queue => {
            if first != QUEUE_TOKEN {
                return Err(SubjectError::NotInQueueNamespace {
                    subject: subject.to_owned(),
                });
            }
            if count < 2 {
                return Err(SubjectError::QueueTooShort {
                    subject: subject.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A character as error messages show it: `` `$` ``, or "a space".
pub fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        '\t' => "a tab".to_owned(),
        '\r' => "a carriage return".to_owned(),
        '\n' => "a line feed".to_owned(),
        c if c.is_control() || c.is_whitespace() => format!("control character {c:?}"),
        c => format!("`{c}`"),
    }
}

/// Whether `c` may appear in a literal token.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether the subject `pattern` (which may hold wildcards) matches the
/// concrete subject `subject`, by NATS rules.
///
/// ```
/// use jetwire_grammar::subject::matches;
///
/// assert!(matches("queue.>", "queue.email.eu"));
/// assert!(!matches("queue.>", "queue"));
/// assert!(matches("a.*.c", "a.b.c"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match p {
            ">" => return subject_tokens.next().is_some(),
            "*" => {
                if subject_tokens.next().is_none() {
                    return false;
                }
            }
            literal => {
                if subject_tokens.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    subject_tokens.next().is_none()
}

/// Whether some concrete subject is matched by both patterns.
///
/// Work-queue streams refuse two consumers whose filters overlap, so jetwire
/// checks this at startup.
///
/// ```
/// use jetwire_grammar::subject::overlaps;
///
/// assert!(overlaps("queue.*", "queue.email"));
/// assert!(overlaps("queue.>", "queue.a.b"));
/// assert!(!overlaps("queue.email", "queue.sms"));
/// assert!(!overlaps("queue.*", "queue.a.b"));
/// ```
pub fn overlaps(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(x), Some(y)) => {
                if *x != "*" && *y != "*" && x != y {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

/// The prefix in force: `None` when unset or empty. Every rule that puts
/// a prefix in front of a subject or name goes through this one.
///
/// ```
/// use jetwire_grammar::subject::set_prefix;
///
/// assert_eq!(set_prefix(Some("t1")), Some("t1"));
/// assert_eq!(set_prefix(Some("")), None);
/// ```
pub fn set_prefix(prefix: Option<&str>) -> Option<&str> {
    prefix.filter(|p| !p.is_empty())
}

/// The subject with `prefix` put in front, as the server sees it.
///
/// ```
/// use jetwire_grammar::subject::with_prefix;
///
/// assert_eq!(with_prefix(Some("test1"), "orders.created"), "test1.orders.created");
/// assert_eq!(with_prefix(None, "orders.created"), "orders.created");
/// ```
pub fn with_prefix(prefix: Option<&str>, subject: &str) -> String {
    match set_prefix(prefix) {
        Some(p) => format!("{p}.{subject}"),
        None => subject.to_owned(),
    }
}

/// The subject without `prefix`, as handlers see it; `None` if it does not
/// carry the prefix.
///
/// ```
/// use jetwire_grammar::subject::strip_prefix;
///
/// assert_eq!(strip_prefix(Some("t1"), "t1.orders.created"), Some("orders.created"));
/// assert_eq!(strip_prefix(Some("t1"), "t2.orders.created"), None);
/// ```
pub fn strip_prefix<'a>(prefix: Option<&str>, subject: &'a str) -> Option<&'a str> {
    match set_prefix(prefix) {
        Some(p) => subject.strip_prefix(p)?.strip_prefix('.'),
        None => Some(subject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Usage::*;
        let ok: &[(&str, Usage)] = &[
            ("orders.created", Subscribe),
            ("orders", Subscribe),
            ("orders.*", Subscribe),
            ("orders.>", Subscribe),
            ("orders.*.eu", Subscribe),
            ("Orders-v2.created_at", Subscribe),
            ("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", Subscribe),
            ("queues.x", Subscribe),
            ("dlqs", Subscribe),
            ("queue.email", Queue),
            ("queue.*", Queue),
            ("queue.>", Queue),
            ("queue.email.eu", Queue),
            ("queue.email", Publish),
            ("dlq.orders.created", Publish),
            ("orders.created", Publish),
        ];
        for (s, u) in ok {
            assert_eq!(check(s, *u), Ok(()), "{s} as {u:?}");
        }
        let bad: &[(&str, Usage, &str)] = &[
            ("", Subscribe, "empty"),
            (".orders", Subscribe, "leading"),
            ("orders.", Subscribe, "trailing"),
            ("orders..created", Subscribe, "doubled"),
            ("orders created", Subscribe, "a space"),
            ("orders.créé", Subscribe, "`é`"),
            ("orders.$x", Subscribe, "`$`"),
            ("$JS.API", Publish, "`$`"),
            ("orders\r\n.x", Publish, "carriage return"),
            ("orders.a*", Subscribe, "whole token"),
            ("orders.>x", Subscribe, "whole token"),
            ("orders.>.eu", Subscribe, "not the last"),
            ("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q", Subscribe, "17 tokens"),
            ("queue.email", Subscribe, "reserved for work queues"),
            ("queue", Subscribe, "reserved for work queues"),
            ("dlq.orders", Subscribe, "reserved for dead letters"),
            ("*.created", Subscribe, "starts with a wildcard"),
            (">", Subscribe, "starts with a wildcard"),
            ("email", Queue, "must start with `queue.`"),
            ("*.email", Queue, "must start with `queue.`"),
            ("queue", Queue, "names no queue"),
            ("orders.*", Publish, "without `*` or `>`"),
            ("orders.>", Publish, "without `*` or `>`"),
        ];
        for (s, u, needle) in bad {
            let err = check(s, *u).expect_err(s).to_string();
            assert!(err.contains(needle), "{s:?} as {u:?}: {err}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        assert!(matches!(
            check(&long, Publish),
            Err(SubjectError::TooLong { .. })
        ));
    }

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

    #[test]
    fn matching() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("*.>", "a.b"));
    }

    #[test]
    fn overlap() {
        assert!(overlaps("queue.a", "queue.a"));
        assert!(overlaps("queue.*.x", "queue.a.*"));
        assert!(!overlaps("queue.a.x", "queue.a"));
        assert!(overlaps("queue.a.>", "queue.*.b"));
        assert!(!overlaps("queue.a.>", "queue.a"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                8 => "[A-Za-z0-9_-]{1,8}",
                1 => Just("*".to_owned()),
                1 => Just(">".to_owned()),
                1 => "[ -~]{1,4}",
                1 => Just(String::new()),
            ]
        }

        proptest! {
            /// Whatever the grammar accepts is a subject NATS accepts: no
            /// empty token, no whitespace or control bytes, wildcards only as
            /// whole tokens and `>` only last, within the size limits.
            #[test]
            fn accepted_subjects_are_valid_nats(tokens in prop::collection::vec(token(), 1..20)) {
                let subject = tokens.join(".");
                for usage in [Usage::Subscribe, Usage::Queue, Usage::Publish] {
                    if check(&subject, usage).is_ok() {
                        let toks: Vec<&str> = subject.split('.').collect();
                        prop_assert!(toks.len() <= MAX_TOKENS);
                        prop_assert!(subject.len() <= MAX_LEN);
                        for (i, t) in toks.iter().enumerate() {
                            prop_assert!(!t.is_empty());
                            prop_assert!(t.bytes().all(|b| b.is_ascii_graphic()));
                            if t.contains('*') || t.contains('>') {
                                prop_assert!(*t == "*" || *t == ">");
                                prop_assert!(usage != Usage::Publish);
                            }
                            if *t == ">" {
                                prop_assert_eq!(i, toks.len() - 1);
                            }
                        }
                        // A concrete subject matches itself.
                        if usage == Usage::Publish {
                            prop_assert!(matches(&subject, &subject));
                        }
                    }
                }
            }

            /// A pattern matches a subject only if the two overlap.
            #[test]
            fn match_implies_overlap(a in "[ab*]{1}(\\.[ab*>]){0,3}", b in "[ab]{1}(\\.[ab]){0,3}") {
                let tail_ok = a.find('>').is_none_or(|i| i == a.len() - 1);
                if tail_ok && matches(&a, &b) {
                    prop_assert!(overlaps(&a, &b));
                }
            }
        }
    }
}
