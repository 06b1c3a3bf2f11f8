//! Which of a binary's handlers an app runs (`JETWIRE_HANDLERS`,
//! `App::only`, `App::only_kind`): one kind, or handlers by name.

use crate::error::Error;
use crate::names::Kind;

/// A choice of handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Every handler of one kind.
    Kind(Kind),
    /// The handlers answering to these fn names or module paths.
    Names(Vec<String>),
}

impl Selection {
    /// The handlers answering to these names.
    pub(crate) fn named(names: &[&str]) -> Selection {
        Selection::Names(names.iter().map(|n| (*n).to_owned()).collect())
    }

    /// `JETWIRE_HANDLERS` as written: `queues`, `events`, or a comma
    /// separated list of handler names.
    pub(crate) fn parse(value: &str) -> Result<Selection, Error> {
        match value.trim() {
            "queues" => Ok(Selection::Kind(Kind::Queue)),
            "events" => Ok(Selection::Kind(Kind::Subscribe)),
            list => {
                let names: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                if names.is_empty() {
                    return Err(Error::Config(
                        "JETWIRE_HANDLERS names no handler: write `queues`, `events` or handler names, e.g. JETWIRE_HANDLERS=send_email,on_order; unset it to run every handler".into(),
                    ));
                }
                Ok(Selection::Names(names))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_their_plural_and_names_as_a_list() {
        assert_eq!(
            Selection::parse("queues").ok(),
            Some(Selection::Kind(Kind::Queue))
        );
        assert_eq!(
            Selection::parse(" events ").ok(),
            Some(Selection::Kind(Kind::Subscribe))
        );
        assert_eq!(
            Selection::parse("send_email, billing::on_order,").ok(),
            Some(Selection::Names(vec![
                "send_email".into(),
                "billing::on_order".into()
            ]))
        );
        let err = Selection::parse(" , ").expect_err("no name");
        assert!(err.to_string().contains("JETWIRE_HANDLERS"), "{err}");
    }
}
