//! [`Tables`]: the names of jetwire's tables, with an optional prefix.

use crate::error::OutboxError;

/// A prefix as it may be shown: at most 64 characters, no control ones.
fn jetwire_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Whether `s` is ASCII letters, digits and `_` only: safe to splice into
/// SQL as (part of) a table name.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Table names, with an optional prefix (`app_` makes `app_jetwire_outbox`).
///
/// | table | what |
/// |---|---|
/// | `jetwire_outbox` | messages waiting to be published |
/// | `jetwire_dead_letters` | a copy of every dead letter |
/// | `jetwire_schema` | the migrations run |
///
/// ```
/// let t = jetwire_sql::Tables::with_prefix("billing_")?;
/// assert_eq!(t.outbox(), "billing_jetwire_outbox");
/// # Ok::<(), jetwire_sql::OutboxError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    prefix: String,
    /// The dead-letter table's own name, where it is not jetwire's.
    dead_letters: Option<String>,
}

impl Tables {
    /// The longest table prefix: the longest name made from it, the index
    /// `<prefix>jetwire_dead_letters_failed` (27 bytes after the prefix),
    /// fits PostgreSQL's 63-byte identifiers with room to spare.
    pub const MAX_PREFIX: usize = 32;

    /// Names starting with `prefix`: ASCII letters, digits and `_` only
    /// (a table name is spliced into SQL), at most [`Tables::MAX_PREFIX`] bytes (so
    /// the longest index name fits PostgreSQL's 63 bytes).
    pub fn with_prefix(prefix: impl Into<String>) -> Result<Tables, OutboxError> {
        let prefix = prefix.into();
        if !plain(&prefix) {
            return Err(OutboxError::Config(format!(
                "a table prefix is ASCII letters, digits and `_`, not {:?}",
                jetwire_text(&prefix)
            )));
        }
        if prefix.len() > Self::MAX_PREFIX {
            return Err(OutboxError::Config(format!(
                "a table prefix is at most {} bytes (PostgreSQL cuts longer names, and the indexes would collide); `{prefix}` is {}",
                Self::MAX_PREFIX,
                prefix.len()
            )));
        }
        Ok(Tables {
            prefix,
            dead_letters: None,
        })
    }

    /// The dead-letter table under a name of your own, e.g. an existing
    /// `failed_tasks` whose migrations your project keeps: it needs
    /// jetwire's columns (see [`Tables::migration_sql`]), whatever else
    /// it has. ASCII letters, digits and `_`, not starting with a digit,
    /// at most 56 bytes (its index adds `_failed`).
    ///
    /// ```
    /// let t = jetwire_sql::Tables::default().dead_letters_named("failed_tasks")?;
    /// assert_eq!(t.dead_letters(), "failed_tasks");
    /// assert_eq!(t.outbox(), "jetwire_outbox");
    /// # Ok::<(), jetwire_sql::OutboxError>(())
    /// ```
    pub fn dead_letters_named(mut self, name: impl Into<String>) -> Result<Tables, OutboxError> {
        let name = name.into();
        let well_formed = plain(&name) && name.bytes().next().is_some_and(|b| !b.is_ascii_digit());
        if !well_formed || name.len() > 56 {
            return Err(OutboxError::Config(format!(
                "a table name is ASCII letters, digits and `_`, not starting with a digit, at most 56 bytes; not {:?}",
                jetwire_text(&name)
            )));
        }
        self.dead_letters = Some(name);
        Ok(self)
    }

    /// The outbox table.
    pub fn outbox(&self) -> String {
        format!("{}jetwire_outbox", self.prefix)
    }

    /// The dead-letter table.
    pub fn dead_letters(&self) -> String {
        match &self.dead_letters {
            Some(name) => name.clone(),
            None => format!("{}jetwire_dead_letters", self.prefix),
        }
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
    fn a_prefix_that_could_inject_sql_or_lose_its_indexes_is_refused() {
        let err = Tables::with_prefix("x; drop table users; --").expect_err("refused");
        assert!(err.to_string().contains("table prefix"), "{err}");
        let long = "p".repeat(Tables::MAX_PREFIX + 1);
        assert!(Tables::with_prefix(long).is_err());
        let t = Tables::with_prefix("p".repeat(Tables::MAX_PREFIX)).expect("fits");
        assert!(format!("{}_failed", t.dead_letters()).len() <= 63);
    }

    #[test]
    fn a_dead_letter_table_of_its_own_name_is_a_plain_identifier() {
        for bad in ["failed tasks", "1failed", "", "x\"; drop table y; --"] {
            let err = Tables::default()
                .dead_letters_named(bad)
                .expect_err("refused");
            assert!(err.to_string().contains("table name"), "{err}");
        }
        assert!(
            Tables::default()
                .dead_letters_named("f".repeat(57))
                .is_err()
        );
        let t = Tables::with_prefix("app_")
            .and_then(|t| t.dead_letters_named("failed_tasks"))
            .expect("valid");
        assert_eq!(
            (t.dead_letters(), t.outbox()),
            ("failed_tasks".into(), "app_jetwire_outbox".into())
        );
    }
}
