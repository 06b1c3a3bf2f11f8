//! Pointing inside a string literal: at the token of a subject that
//! breaks a rule, rather than at the whole string.

use std::fmt::Display;
use std::ops::Range;

use proc_macro2::Span;
use syn::LitStr;

use crate::ctxt::Ctxt;

/// Reports `msg` at `location` (a byte range of the literal's value) where
/// the compiler can point there, like rustc's own errors in format strings.
/// Where it cannot (stable compilers give no spans inside a literal, and a
/// literal with escapes has no one-to-one mapping), the error spans the
/// literal and its message marks the range under the value.
pub(crate) fn error_in_literal(
    cx: &Ctxt,
    lit: &LitStr,
    location: Option<Range<usize>>,
    msg: impl Display,
) {
    let Some(range) = location else {
        return cx.error_spanned_by(lit, msg);
    };
    match subspan(lit, range.clone()) {
        Some(span) => cx.error_at(span, msg),
        None => cx.error_spanned_by(lit, format!("{msg}\n{}", marked(&lit.value(), range))),
    }
}

/// The span of `range` of the value, for a plain `"..."` literal whose
/// source is its value.
fn subspan(lit: &LitStr, range: Range<usize>) -> Option<Span> {
    let token = lit.token();
    let source = token.to_string();
    let inner = source.strip_prefix('"')?.strip_suffix('"')?;
    if inner != lit.value() {
        return None;
    }
    token.subspan(range.start + 1..range.end + 1)
}

/// The value, and under it `^` at the range.
fn marked(value: &str, range: Range<usize>) -> String {
    let before = value.get(..range.start).unwrap_or_default().chars().count();
    let width = value.get(range).unwrap_or_default().chars().count().max(1);
    format!("  {value}\n  {}{}", " ".repeat(before), "^".repeat(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_the_range_in_characters() {
        assert_eq!(marked("orders..x", 7..8), "  orders..x\n         ^");
        assert_eq!(marked("créé.$", 7..8), "  créé.$\n       ^");
        assert_eq!(marked("a.bc", 2..4), "  a.bc\n    ^^");
    }
}
