//! What a server's version says it can do.

/// Whether a server of `version` (`2.12.8`) is `major.minor` or later; a
/// version that does not read as numbers is none.
pub(crate) fn at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_then_minor() {
        for (version, has) in [
            ("2.11.0", true),
            ("2.12.8", true),
            ("3.0.0", true),
            ("2.10.24", false),
            ("2.9.0", false),
            ("", false),
        ] {
            assert_eq!(at_least(version, (2, 11)), has, "{version}");
        }
    }
}
