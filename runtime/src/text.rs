//! Text from outside (payloads, headers, advisories, handler errors) made
//! fit for a log line or a header: control characters blanked, at most so
//! many bytes, cut at a character boundary and marked with `…`.

/// `text` with control characters (CR, LF, NUL, ...) as spaces, cut to at
/// most `max` bytes (plus the `…` that marks a cut).
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if end < text.len() {
        out.push('…');
    }
    out
}

/// What a panic said, from its payload (a `&str` or `String`; anything
/// else is named as such).
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

/// `a::b::Order<c::Item>` as `Order<Item>`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            out.push_str(segment.rsplit("::").next().unwrap_or(""));
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(segment.rsplit("::").next().unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name("a::b::Order"), "Order");
        assert_eq!(short_type_name("alloc::vec::Vec<app::Item>"), "Vec<Item>");
        assert_eq!(short_type_name("(u8, x::Y)"), "(u8, Y)");
    }

    #[test]
    fn control_characters_are_blanked_and_long_text_cut() {
        assert_eq!(bounded("a\r\nb\0c", 100), "a  b c");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
        // Never inside a character.
        assert_eq!(bounded("éé", 3), "é…");
        let huge = "x".repeat(1 << 20);
        assert!(bounded(&huge, 1024).len() <= 1024 + '…'.len_utf8());
    }
}
