//! [`Router`]: which publisher a row goes through, by ordered rules.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use jetwire::Publisher;

use crate::outbox::Row;

type RouteFn = Arc<dyn for<'r> Fn(&'r Row) -> Option<&'r str> + Send + Sync>;
type SubjectFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the relay publishes each row: rules tried in the order they were
/// added, the first that matches wins.
///
/// - [`Router::header`]: a header's value picks a publisher.
/// - [`Router::destination`]: the row's `Jetwire-Destination` picks one by
///   name (a row that names no destination does not match).
/// - [`Router::route`]: a function of the whole row names a destination,
///   or `None` to leave the row to the next rule.
/// - [`Router::fallback`] (or [`Router::fallback_to_app`]): rows no rule
///   matched.
///
/// A row no rule matches, with no fallback, is not published and not
/// dropped: it stays pending with the reason as its error and is tried
/// again after the backoff, without using up its attempts, until a relay
/// that routes it runs; later rows of its key wait behind it. So is a row
/// whose rule names a destination no publisher is registered under. No
/// row goes to the app's own connection unless a rule says so.
///
/// A relay with no router routes as
/// `Router::new().destination(..).fallback_to_app()`: a named destination
/// goes through the publisher of that name ([`Outbox::destination`]),
/// every other row through the app's own connection.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, eu: jetwire::Publisher, us: jetwire::Publisher,
/// #     billing: jetwire::Publisher, audit: jetwire::Publisher) {
/// use jetwire_sql::outbox::{Router, Row};
///
/// let relay = jetwire_sql::Outbox::new(pool).router(
///     Router::new()
///         .header("region", [("eu", eu), ("us", us)])
///         .destination([("billing", billing), ("audit", audit)])
///         .route(|row: &Row| row.subject().starts_with("audit.").then_some("audit"))
///         .fallback_to_app(),
/// );
/// # let _ = relay; }
/// ```
///
/// [`Outbox::destination`]: crate::Outbox::destination
#[derive(Clone, Default)]
pub struct Router {
    rules: Vec<Rule>,
    named: HashMap<String, Publisher>,
    fallback: Option<Target>,
}

#[derive(Clone)]
enum Rule {
    Header {
        name: String,
        by_value: HashMap<String, Publisher>,
    },
    Destination,
    Route(RouteFn),
    Subject(SubjectFn),
}

#[derive(Clone)]
enum Target {
    App,
    Publisher(Box<Publisher>),
}

/// Where a row goes.
pub(crate) enum Routed<'a> {
    /// The app's own connection.
    App,
    /// This publisher.
    Publisher(&'a Publisher),
    /// Nowhere for now: why.
    Unroutable(String),
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| match r {
                Rule::Header { name, by_value } => {
                    let mut values: Vec<&String> = by_value.keys().collect();
                    values.sort();
                    format!("header {name} {values:?}")
                }
                Rule::Destination => "destination".to_owned(),
                Rule::Route(_) => "route".to_owned(),
                Rule::Subject(_) => "route by subject".to_owned(),
            })
            .collect();
        let mut named: Vec<&String> = self.named.keys().collect();
        named.sort();
        f.debug_struct("Router")
            .field("rules", &rules)
            .field("destinations", &named)
            .field(
                "fallback",
                &self.fallback.as_ref().map(|t| match t {
                    Target::App => "the app's connection",
                    Target::Publisher(_) => "a publisher",
                }),
            )
            .finish()
    }
}

impl Router {
    /// No rules and no fallback: every row waits until rules are added.
    pub fn new() -> Router {
        Router::default()
    }

    /// Rows whose header `name` (compared without case) has one of the
    /// values go through its publisher; other rows are left to the next
    /// rule.
    pub fn header<V: Into<String>>(
        mut self,
        name: impl Into<String>,
        by_value: impl IntoIterator<Item = (V, Publisher)>,
    ) -> Router {
        self.rules.push(Rule::Header {
            name: name.into(),
            by_value: by_value.into_iter().map(|(v, p)| (v.into(), p)).collect(),
        });
        self
    }

    /// Names publishers, and adds the rule that a row naming a
    /// destination (`Jetwire-Destination`) goes through the publisher of
    /// that name. The names also serve [`Router::route`].
    pub fn destination<N: Into<String>>(
        mut self,
        named: impl IntoIterator<Item = (N, Publisher)>,
    ) -> Router {
        self.named
            .extend(named.into_iter().map(|(n, p)| (n.into(), p)));
        if !self.rules.iter().any(|r| matches!(r, Rule::Destination)) {
            self.rules.push(Rule::Destination);
        }
        self
    }

    /// Rows for which `route` names a destination go through the
    /// publisher of that name ([`Router::destination`]); `None` leaves the
    /// row to the next rule.
    pub fn route(
        mut self,
        route: impl for<'r> Fn(&'r Row) -> Option<&'r str> + Send + Sync + 'static,
    ) -> Router {
        self.rules.push(Rule::Route(Arc::new(route)));
        self
    }

    /// Rows no rule matched go through `publisher`.
    pub fn fallback(mut self, publisher: Publisher) -> Router {
        self.fallback = Some(Target::Publisher(Box::new(publisher)));
        self
    }

    /// Rows no rule matched go through the app's own connection.
    pub fn fallback_to_app(mut self) -> Router {
        self.fallback = Some(Target::App);
        self
    }

    /// The routing of a relay without a router: its destinations, then
    /// its route by subject, then the app's connection.
    pub(crate) fn standard(
        named: HashMap<String, Publisher>,
        by_subject: Option<SubjectFn>,
    ) -> Router {
        let mut router = Router::new().destination(named).fallback_to_app();
        if let Some(f) = by_subject {
            router.rules.push(Rule::Subject(f));
        }
        router
    }

    /// Adds the relay's own named publishers ([`Outbox::destination`]
    /// beside a router); the router's names win.
    ///
    /// [`Outbox::destination`]: crate::Outbox::destination
    pub(crate) fn with_names(mut self, named: &HashMap<String, Publisher>) -> Router {
        for (name, publisher) in named {
            self.named
                .entry(name.clone())
                .or_insert_with(|| publisher.clone());
        }
        self
    }

    /// The first rule's answer for `row`, else the fallback, else why not.
    pub(crate) fn pick<'a>(&'a self, row: &Row) -> Routed<'a> {
        for rule in &self.rules {
            let name = match rule {
                Rule::Header { name, by_value } => {
                    match row.header(name).and_then(|v| by_value.get(v)) {
                        Some(publisher) => return Routed::Publisher(publisher),
                        None => continue,
                    }
                }
                Rule::Destination => row.destination().map(Cow::Borrowed),
                Rule::Route(f) => f(row).map(Cow::Borrowed),
                Rule::Subject(f) => f(row.subject()).map(Cow::Owned),
            };
            if let Some(name) = name {
                return match self.named.get(name.as_ref()) {
                    Some(publisher) => Routed::Publisher(publisher),
                    None => Routed::Unroutable(format!(
                        "no publisher for destination `{name}`: register one with Router::destination([(\"{name}\", publisher)]) or Outbox::destination(\"{name}\", publisher); the row waits until then"
                    )),
                };
            }
        }
        match &self.fallback {
            Some(Target::App) => Routed::App,
            Some(Target::Publisher(p)) => Routed::Publisher(p),
            None => Routed::Unroutable(
                "no routing rule matches the row and the router has no fallback: add a rule or Router::fallback; the row waits until then".to_owned(),
            ),
        }
    }
}
