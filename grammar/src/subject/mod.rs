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

mod error;

pub use error::SubjectError;

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
    /// `#[queue(.., stream = "..")]`: a work-queue subject on a stream the
    /// operator made. Any namespace but `dlq`; wildcards allowed, but not first.
    QueueOnStream,
    /// `#[subscribe]` with a `DeadLetter` payload: a subject of dead
    /// letters, `dlq.` and at least one more token.
    DeadLetters,
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
        Usage::DeadLetters => {
            if first != DLQ_TOKEN || count < 2 {
                return Err(SubjectError::NotDeadLetters {
                    subject: subject.to_owned(),
                });
            }
        }
        Usage::QueueOnStream => {
            if first == "*" || first == ">" {
                return Err(SubjectError::LeadingWildcard {
                    subject: subject.to_owned(),
                });
            }
            if first == DLQ_TOKEN {
                return Err(SubjectError::Reserved {
                    subject: subject.to_owned(),
                    token: DLQ_TOKEN,
                });
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
                for usage in [Usage::Subscribe, Usage::Queue, Usage::Publish, Usage::QueueOnStream, Usage::DeadLetters] {
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
