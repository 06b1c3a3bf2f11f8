//! Stream and durable consumer names.
//!
//! NATS uses these names as subject tokens in its API (`$JS.API.STREAM.INFO.<name>`)
//! and as file names in its store, so jetwire keeps to a safe subset: ASCII
//! letters, digits, `-` and `_`, at most [`MAX_LEN`] characters.
//!
//! ```
//! use jetwire_grammar::name::{check, Kind};
//!
//! assert!(check("ORDERS", Kind::Stream).is_ok());
//! assert!(check("billing.on_order", Kind::Durable).is_err());
//! ```

use std::fmt;

/// The longest stream or durable name jetwire accepts.
pub const MAX_LEN: usize = 64;

/// What a name is for; only used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stream name.
    Stream,
    /// A durable consumer name.
    Durable,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Stream => "stream",
            Kind::Durable => "durable",
        })
    }
}

/// Why a name was refused. `Display` says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty(Kind),
    /// The name is longer than [`MAX_LEN`].
    TooLong(Kind, String),
    /// The name holds a character outside the safe set.
    InvalidChar(Kind, String, char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty(kind) => {
                let example = match kind {
                    Kind::Stream => "ORDERS",
                    Kind::Durable => "billing-orders",
                };
                write!(f, "{kind} name is empty: write e.g. `{example}`")
            }
            NameError::TooLong(kind, name) => write!(
                f,
                "{kind} name `{name}` is {} characters long; the limit is {MAX_LEN}",
                name.chars().count()
            ),
            NameError::InvalidChar(kind, name, ch) => write!(
                f,
                "{kind} name `{}` contains {}; use only ASCII letters, digits, `-` and `_`",
                name.escape_debug(),
                crate::subject::describe_char(*ch)
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a stream or durable name.
pub fn check(name: &str, kind: Kind) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty(kind));
    }
    if let Some(ch) = name.chars().find(|c| !crate::subject::is_token_char(*c)) {
        return Err(NameError::InvalidChar(kind, name.to_owned(), ch));
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong(kind, name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for ok in ["ORDERS", "billing-on_order", "a"] {
            assert_eq!(check(ok, Kind::Stream), Ok(()));
        }
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", "x\u{0}"] {
            assert!(check(bad, Kind::Durable).is_err(), "{bad:?}");
        }
        assert!(check(&"a".repeat(MAX_LEN + 1), Kind::Stream).is_err());
    }
}
