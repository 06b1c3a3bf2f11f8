//! Where a new event durable starts reading (`deliver = ".."`): `"new"`,
//! `"all"`, `"last"`, `"last_per_subject"`, an RFC 3339 time, or
//! `"seq:<n>"`.
//!
//! ```
//! use jetwire_grammar::deliver::{parse, Start};
//!
//! assert_eq!(parse("last_per_subject"), Ok(Start::LastPerSubject));
//! assert_eq!(parse("seq:42"), Ok(Start::Sequence(42)));
//! assert_eq!(
//!     parse("2026-01-02T03:04:05.5+01:00"),
//!     Ok(Start::Time { unix_seconds: 1_767_319_445, nanos: 500_000_000 })
//! );
//! assert!(parse("latest").expect_err("not a form").contains("\"last\""));
//! ```

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Start {
    /// Only messages published after the durable is created.
    New,
    /// Every message in the stream.
    All,
    /// The last message in the stream, then what follows.
    Last,
    /// The last message of each subject, then what follows.
    LastPerSubject,
    /// The first message stored at or after this time.
    Time {
        /// Seconds since 1970-01-01T00:00:00Z.
        unix_seconds: i64,
        /// And nanoseconds.
        nanos: u32,
    },
    /// The message at this stream sequence, then what follows.
    Sequence(u64),
}

const FORMS: &str = "\"new\" (only messages published from now on), \"all\" (everything in the stream), \"last\", \"last_per_subject\", an RFC 3339 time such as \"2026-01-02T03:04:05Z\", or \"seq:<n>\"";

/// Reads a `deliver` value; the error says which forms there are.
pub fn parse(input: &str) -> Result<Start, String> {
    match input {
        "new" => return Ok(Start::New),
        "all" => return Ok(Start::All),
        "last" => return Ok(Start::Last),
        "last_per_subject" => return Ok(Start::LastPerSubject),
        _ => {}
    }
    if let Some(n) = input.strip_prefix("seq:") {
        return match n.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Start::Sequence(n)),
            _ => Err(format!(
                "`deliver = {input:?}`: a stream sequence is a whole number from 1, as in \"seq:42\""
            )),
        };
    }
    if input.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return rfc3339(input).ok_or_else(|| {
            format!(
                "`deliver = {input:?}` is not an RFC 3339 time: write it as \"2026-01-02T03:04:05Z\" or with an offset, \"2026-01-02T03:04:05+01:00\""
            )
        });
    }
    Err(format!("`deliver` is {FORMS}, not {input:?}"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, as a time since 1970.
fn rfc3339(s: &str) -> Option<Start> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())?
    };
    let sep = |at: usize, ok: &[u8]| b.get(at).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: u32 = 0;
    if sep(at, b".") {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let fraction = std::str::from_utf8(&b[at + 1..at + 1 + digits]).ok()?;
        nanos = fraction.parse::<u32>().ok()? * 10u32.pow(9 - digits as u32);
        at += 1 + digits;
    }
    let offset = match b.get(at..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == at + 6 && sep(at + 3, b":") => {
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset * 60;
    Some(Start::Time {
        unix_seconds: seconds,
        nanos,
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Option<(i64, u32)> {
        match parse(s) {
            Ok(Start::Time {
                unix_seconds,
                nanos,
            }) => Some((unix_seconds, nanos)),
            _ => None,
        }
    }

    #[test]
    fn times_read_as_rfc_3339_has_them() {
        assert_eq!(time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(time("2000-02-29T12:00:00Z"), Some((951_825_600, 0)));
        assert_eq!(
            time("2026-12-02T00:00:00.000000001Z"),
            Some((1_796_169_600, 1))
        );
        assert_eq!(time("1970-01-01T01:00:00+01:00"), Some((0, 0)));
        assert_eq!(time("1969-12-31T23:00:00-01:00"), Some((0, 0)));
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-1-01T00:00:00Z",
        ] {
            assert_eq!(time(bad), None, "{bad}");
            assert!(parse(bad).expect_err(bad).contains("RFC 3339"), "{bad}");
        }
    }

    #[test]
    fn the_other_forms_and_what_a_mistake_is_told() {
        assert_eq!(parse("new"), Ok(Start::New));
        assert_eq!(parse("all"), Ok(Start::All));
        assert_eq!(parse("last"), Ok(Start::Last));
        assert_eq!(parse("seq:1"), Ok(Start::Sequence(1)));
        assert!(parse("seq:0").expect_err("seq:0").contains("from 1"));
        assert!(parse("seq:x").expect_err("seq:x").contains("seq:42"));
        let error = parse("latest").expect_err("latest");
        assert!(
            error.contains("last_per_subject") && error.contains("\"latest\""),
            "{error}"
        );
    }
}
