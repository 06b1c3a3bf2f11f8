//! [`Tables`]: the names of jetwire's tables, with an optional prefix.

/// Table names, with an optional prefix (`app_` makes `app_jetwire_outbox`).
///
/// | table | what |
/// |---|---|
/// | `jetwire_outbox` | messages waiting to be published |
/// | `jetwire_dead_letters` | a copy of every dead letter |
/// | `jetwire_schema` | the migrations run |
///
/// ```
/// let t = jetwire_sql::Tables::with_prefix("billing_");
/// assert_eq!(t.outbox(), "billing_jetwire_outbox");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    prefix: String,
}

impl Tables {
    /// Names starting with `prefix`: ASCII letters, digits and `_` only.
    ///
    /// # Panics
    /// On any other character: a table name is spliced into SQL.
    pub fn with_prefix(prefix: impl Into<String>) -> Tables {
        let prefix = prefix.into();
        assert!(
            prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "a table prefix is ASCII letters, digits and `_`, not {prefix:?}"
        );
        Tables { prefix }
    }

    /// The outbox table.
    pub fn outbox(&self) -> String {
        format!("{}jetwire_outbox", self.prefix)
    }

    /// The dead-letter table.
    pub fn dead_letters(&self) -> String {
        format!("{}jetwire_dead_letters", self.prefix)
    }

    /// The table of migrations run.
    pub fn schema(&self) -> String {
        format!("{}jetwire_schema", self.prefix)
    }

    /// The Postgres channel a new outbox row is announced on.
    pub fn channel(&self) -> String {
        format!("{}jetwire_outbox", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "table prefix")]
    fn a_prefix_that_could_inject_sql_is_refused() {
        let _ = Tables::with_prefix("x; drop table users; --");
    }
}
