//! Durations as jetwire writes them: an integer and a unit.
//!
//! Units: `ms`, `s`, `m`, `h`, `d`. `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"7d"`.
//!
//! ```
//! use std::time::Duration;
//! use jetwire_grammar::duration::parse;
//!
//! assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
//! assert!(parse("5").is_err());
//! ```

use std::fmt;
use std::time::Duration;

/// Why a duration string was refused. `Display` says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// The string is empty.
    Empty,
    /// No number before the unit.
    NoNumber {
        /// The string as given.
        input: String,
    },
    /// A number without a unit.
    NoUnit {
        /// The string as given.
        input: String,
    },
    /// A unit jetwire does not know.
    UnknownUnit {
        /// The string as given.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// The number does not fit.
    Overflow {
        /// The string as given.
        input: String,
    },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str(
                "duration is empty: write a whole number and a unit (ms, s, m, h), e.g. \"5s\"",
            ),
            DurationError::NoNumber { input } => write!(
                f,
                "duration \"{}\" does not start with a whole number: write e.g. \"250ms\", \"5s\", \"2m\" or \"1h\"",
                input.escape_debug()
            ),
            DurationError::NoUnit { input } => write!(
                f,
                "duration \"{input}\" has no unit: write \"{input}s\" for seconds or \"{input}ms\" for milliseconds (units: ms, s, m, h)"
            ),
            DurationError::UnknownUnit { input, unit } => write!(
                f,
                "duration \"{}\" has unknown unit `{}`: use ms, s, m, h or d, e.g. \"250ms\", \"5s\", \"2m\", \"1h\", \"7d\"",
                input.escape_debug(),
                unit.escape_debug()
            ),
            DurationError::Overflow { input } => {
                write!(
                    f,
                    "duration \"{input}\" is too large: use a bigger unit or a smaller number"
                )
            }
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `"<whole number><unit>"` with unit `ms`, `s`, `m` or `h`.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let digits = input.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = input.split_at(digits);
    if number.is_empty() {
        return Err(DurationError::NoNumber {
            input: input.to_owned(),
        });
    }
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let n: u64 = number.parse().map_err(|_| overflow())?;
    let millis_per = match unit {
        "" => {
            return Err(DurationError::NoUnit {
                input: input.to_owned(),
            });
        }
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(DurationError::UnknownUnit {
                input: input.to_owned(),
                unit: other.to_owned(),
            });
        }
    };
    n.checked_mul(millis_per)
        .map(Duration::from_millis)
        .ok_or_else(overflow)
}

/// Formats a duration the way [`parse`] reads it, in the largest exact unit.
///
/// ```
/// use std::time::Duration;
/// use jetwire_grammar::duration::format;
///
/// assert_eq!(format(Duration::from_secs(90)), "90s");
/// assert_eq!(format(Duration::from_secs(120)), "2m");
/// assert_eq!(format(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (s, ms) in [
            ("0s", 0),
            ("250ms", 250),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(parse(s), Ok(Duration::from_millis(ms)), "{s}");
            assert_eq!(
                parse(&format(Duration::from_millis(ms))),
                Ok(Duration::from_millis(ms))
            );
        }
        for (s, needle) in [
            ("", "empty"),
            ("s", "whole number"),
            ("-1s", "whole number"),
            ("1.5s", "unknown unit `.5s`"),
            ("5", "no unit"),
            ("5 s", "unknown unit"),
            ("5sec", "unknown unit `sec`"),
            ("1w", "unknown unit `w`"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999h", "too large"),
        ] {
            let err = parse(s).expect_err(s).to_string();
            assert!(err.contains(needle), "{s:?}: {err}");
        }
    }
}
