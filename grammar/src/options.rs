//! The rules of a handler's options, each with the words of its error:
//! `jetwire-macros` reports them on the attribute's tokens at compile
//! time, and `jetwire` at startup for handlers registered in code.
//!
//! ```
//! use jetwire_grammar::options;
//!
//! assert!(options::backoff_fits(2, Some(3)).is_ok());
//! let err = options::backoff_fits(3, Some(3)).unwrap_err();
//! assert!(err.starts_with("`backoff` has 3 delays but `max_deliver = 3` allows at most 2"));
//! ```

use std::ops::Range;

use crate::{defaults, subject};

/// The largest `max_deliver`.
pub const MAX_MAX_DELIVER: u32 = 1_000_000;
/// The largest `concurrency`.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// The largest `partitions`.
pub const MAX_PARTITIONS: u32 = 256;

/// A broken rule: what to say, and where in the checked text, if one
/// place is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// The message, ending in what to write instead.
    pub message: String,
    /// The bytes of the checked text it is about.
    pub location: Option<Range<usize>>,
}

impl Mistake {
    fn new(message: impl Into<String>, location: Option<Range<usize>>) -> Mistake {
        Mistake {
            message: message.into(),
            location,
        }
    }
}

/// The whole-number option `name` outside `1..=max`.
///
/// ```
/// let text = jetwire_grammar::options::whole_number("concurrency", 10_000, "8");
/// assert_eq!(text, "`concurrency` takes a whole number from 1 to 10000, e.g. `concurrency = 8`");
/// ```
pub fn whole_number(name: &str, max: u32, example: &str) -> String {
    format!("`{name}` takes a whole number from 1 to {max}, e.g. `{name} = {example}`")
}

/// `n` as option `name`, if it is within `1..=max`.
pub fn in_range(name: &str, n: u64, max: u32, example: &str) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(whole_number(name, max, example)),
    }
}

/// A duration option given as zero.
pub fn zero_duration(name: &str, example: &str) -> String {
    format!("`{name}` must be longer than zero, e.g. `{name} = \"{example}\"`")
}

/// An empty `backoff`.
pub const EMPTY_BACKOFF: &str = "`backoff` is empty: give at least one delay, e.g. `backoff = [\"1s\"]`, or remove it for the default";

/// Whether `delays` backoff delays fit `max_deliver` (`None`: the
/// default): one delay per redelivery, so at most `max_deliver - 1`.
pub fn backoff_fits(delays: usize, max_deliver: Option<u32>) -> Result<(), String> {
    let given = max_deliver.is_some();
    let max_deliver = max_deliver.unwrap_or(defaults::MAX_DELIVER);
    let allowed = max_deliver.saturating_sub(1) as usize;
    let from = if given {
        format!("`max_deliver = {max_deliver}`")
    } else {
        format!("the default `max_deliver` of {max_deliver}")
    };
    if allowed == 0 {
        return Err(format!(
            "{from} allows no redelivery, so `backoff` would never be used: remove `backoff` or raise `max_deliver`"
        ));
    }
    if delays > allowed {
        return Err(format!(
            "`backoff` has {delays} delays but {from} allows at most {allowed} (one before each redelivery; the last repeats): drop {} or raise `max_deliver` to {}",
            delays - allowed,
            delays + 1
        ));
    }
    Ok(())
}

/// Option `key` given to a work queue, where only events take it.
pub fn not_for_queue(key: &str) -> String {
    match key {
        "deliver" => "`deliver` applies only to #[subscribe]: a work queue always starts with its oldest job; remove it".to_owned(),
        "durable" => "`durable` applies only to #[subscribe]: a work queue has one durable per subject, shared by every app; remove it".to_owned(),
        other => format!("`{other}` applies only to #[subscribe]; remove it"),
    }
}

/// When a delivery is acknowledged, if not after its call (`ack = ".."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Before the call: at most once.
    First,
}

/// The value of `ack`.
///
/// ```
/// use jetwire_grammar::options::{self, Ack};
///
/// assert_eq!(options::ack("first"), Ok(Ack::First));
/// assert!(options::ack("later").is_err());
/// ```
pub fn ack(value: &str) -> Result<Ack, String> {
    match value {
        "first" => Ok(Ack::First),
        other => Err(format!(
            "`ack = \"{other}\"`: the one value is \"first\" (acknowledged before the call: at most once); remove `ack` to acknowledge after a call succeeds"
        )),
    }
}

/// Option `key` beside `ack = "first"`, which runs a message at most once.
pub fn with_ack_first(key: &str) -> String {
    let why = match key {
        "output" => {
            "an output is published before the ack, and `ack = \"first\"` acknowledges before the call"
        }
        _ => "`ack = \"first\"` runs a message at most once, so it is never redelivered",
    };
    format!("`{key}` cannot go with `ack = \"first\"`: {why}; remove one of them")
}

/// `bind = true` with `partitions`: a partition's durables are jetwire's
/// to make.
pub const BIND_AND_PARTITIONS: &str = "`bind = true` adopts one durable configured elsewhere, and `partitions` makes a durable per partition: keep one of them";

/// `partitions` with `singleton = true`.
pub const PARTITIONS_AND_SINGLETON: &str = "`partitions` spreads keys over replicas, and `singleton = true` keeps every message on one: keep one of them (a singleton is one partition)";

/// A partitioned handler's subject: it cannot end in `>`, which would
/// match the partition subjects `<subject>._p<i>` as well.
pub fn partitioned_subject(subject: &str) -> Result<(), Mistake> {
    if subject == ">" || subject.ends_with(".>") {
        let at = subject.len() - 1;
        return Err(Mistake::new(
            "a partitioned handler's subject cannot end in `>`: partition i is read from `<subject>._p<i>`, which `>` matches too; name the tokens, e.g. \"queue.orders.*\"",
            Some(at..at + 1),
        ));
    }
    Ok(())
}

/// The subject an `output` goes to: one a handler may publish to, never
/// a dead-letter subject.
pub fn output_subject(value: &str) -> Result<(), Mistake> {
    if value.split('.').next() == Some(subject::DLQ_TOKEN) {
        return Err(Mistake::new(
            "an output cannot go to `dlq.`: dead letters are jetwire's to write; return an error to dead-letter the message",
            None,
        ));
    }
    subject::check(value, subject::Usage::Publish)
        .map_err(|err| Mistake::new(err.to_string(), err.location()))
}

/// The placeholder a subject token may be, filled from `JETWIRE_GROUPS`
/// at startup.
pub const GROUP: &str = "{group}";

/// A handler's subject under the rules of `usage`: a whole token
/// `{group}` is checked as a plain token; braces anywhere else are a
/// mistake naming the one placeholder there is.
///
/// ```
/// use jetwire_grammar::{options, subject::Usage};
///
/// assert!(options::handler_subject("queue.render.{group}", Usage::Queue).is_ok());
/// let err = options::handler_subject("queue.{kind}", Usage::Queue).unwrap_err();
/// assert_eq!(err.location, Some(6..12));
/// ```
pub fn handler_subject(value: &str, usage: subject::Usage) -> Result<(), Mistake> {
    let mut start = 0;
    for token in value.split('.') {
        if token != GROUP && (token.contains('{') || token.contains('}')) {
            return Err(Mistake::new(
                format!(
                    "`{token}`: the one placeholder a subject may hold is a whole token `{{group}}` (filled from JETWIRE_GROUPS at startup), e.g. \"queue.render.{{group}}\""
                ),
                Some(start..start + token.len()),
            ));
        }
        start += token.len() + 1;
    }
    let checked = value
        .split('.')
        .map(|t| if t == GROUP { "_group_" } else { t })
        .collect::<Vec<_>>()
        .join(".");
    subject::check(&checked, usage).map_err(|err| Mistake::new(err.to_string(), err.location()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_counts_against_the_default_and_a_given_max_deliver() {
        assert!(backoff_fits(4, None).is_ok());
        let err = backoff_fits(5, None).expect_err("5 delays need max_deliver 6");
        assert!(err.contains("the default `max_deliver` of 5"), "{err}");
        let err = backoff_fits(1, Some(1)).expect_err("no redelivery");
        assert!(err.contains("allows no redelivery"), "{err}");
    }

    #[test]
    fn numbers_outside_their_range_are_named() {
        assert_eq!(in_range("max_deliver", 5, MAX_MAX_DELIVER, "5"), Ok(5));
        assert!(in_range("max_deliver", 0, MAX_MAX_DELIVER, "5").is_err());
        assert!(in_range("partitions", 257, MAX_PARTITIONS, "8").is_err());
        assert!(in_range("partitions", u64::MAX, MAX_PARTITIONS, "8").is_err());
    }

    #[test]
    fn subjects_with_groups_and_partitions() {
        assert!(handler_subject("orders.{group}.created", subject::Usage::Subscribe).is_ok());
        assert!(handler_subject("queue.a{group}", subject::Usage::Queue).is_err());
        assert_eq!(
            partitioned_subject("queue.orders.>").map_err(|m| m.location),
            Err(Some(13..14))
        );
        assert!(partitioned_subject("queue.orders.*").is_ok());
        assert!(output_subject("dlq.x").is_err());
        assert!(output_subject("images.*").is_err());
        assert!(output_subject("images.resized").is_ok());
    }
}
