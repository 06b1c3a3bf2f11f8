//! Every handler the macros registered, and the checks that must pass before
//! any of them runs. [`Problem`] and [`Problems`] are defined with the
//! other errors and named here too.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use jetwire_grammar::{defaults, subject};

use std::sync::Arc;

use crate::classify::Policy;
use crate::config::Selection;
use crate::error::Error;
pub use crate::error::{Problem, Problems};
use crate::handler::context::Route;
use crate::handler::extract::CallFn;
pub use crate::handler::extract::StateKey;
use crate::handler::state::States;
use crate::names;
pub use crate::names::Kind;

/// Where a new event durable starts reading (`deliver = ".."`), as the
/// grammar reads it.
pub use jetwire_grammar::deliver::Start as Deliver;

/// When a delivery is acknowledged, if not after its call (`ack = ".."`).
pub use jetwire_grammar::options::Ack;

/// The options as written in the attribute; `None` is the default.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_deliver: Option<u32>,
    pub backoff: Option<&'static [Duration]>,
    pub ack_wait: Option<Duration>,
    pub concurrency: Option<u32>,
    pub timeout: Option<Duration>,
    pub deliver: Option<Deliver>,
    pub durable: Option<&'static str>,
    pub stream: Option<&'static str>,
    /// Where the `Ok` value goes.
    pub output: Option<&'static str>,
    pub singleton: Option<bool>,
    /// Messages with one key in order, spread over replicas.
    pub partitions: Option<u32>,
    /// Acknowledged before the call (`ack = "first"`), not after it.
    pub ack: Option<Ack>,
    /// Adopt the durable as configured on the server, never change it.
    pub bind: Option<bool>,
}

/// One registered handler, built by `#[subscribe]`/`#[queue]`.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct HandlerDef {
    pub name: &'static str,
    pub module: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub kind: Kind,
    pub subject: &'static str,
    pub payload: &'static str,
    /// The content type its payload is read as; `None`: any bytes.
    pub content_type: Option<&'static str>,
    pub options: Settings,
    pub requires: &'static [fn() -> Option<StateKey>],
    pub call: CallFn,
    /// The payload's JSON Schema, added to `schemas`, where its type has
    /// one (feature `asyncapi`).
    pub schema: fn(&mut Schemas) -> Option<serde_json::Value>,
}

/// The payload schemas of an AsyncAPI document as they are generated,
/// shared types defined once (feature `asyncapi`; empty without it).
#[doc(hidden)]
pub struct Schemas {
    #[cfg(feature = "asyncapi")]
    pub(crate) generator: schemars::SchemaGenerator,
}

impl Schemas {
    /// Definitions go to `#/components/schemas/`, in JSON Schema draft 7
    /// (what AsyncAPI's default schema format extends).
    pub(crate) fn new() -> Schemas {
        Schemas {
            #[cfg(feature = "asyncapi")]
            generator: schemars::generate::SchemaSettings::draft07()
                .with(|s| {
                    s.definitions_path = "/components/schemas".into();
                    s.meta_schema = None;
                })
                .into_generator(),
        }
    }

    /// Every shared definition, by name.
    pub(crate) fn definitions(&mut self) -> serde_json::Map<String, serde_json::Value> {
        #[cfg(feature = "asyncapi")]
        return self.generator.take_definitions(true);
        #[cfg(not(feature = "asyncapi"))]
        serde_json::Map::new()
    }
}

inventory::collect!(HandlerDef);

impl HandlerDef {
    /// `module::name`, to tell handlers apart in messages.
    pub fn path(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }

    /// Whether `name` picks this handler: its fn name or `module::fn` path.
    pub fn answers_to(&self, name: &str) -> bool {
        name == self.name || name == self.path()
    }

    /// Deliveries before dead-lettering; one when acknowledged first.
    pub fn max_deliver(&self) -> u32 {
        if self.acks_first() {
            return 1;
        }
        self.options.max_deliver.unwrap_or(defaults::MAX_DELIVER)
    }

    /// Whether it adopts its durable as the server has it (`bind = true`):
    /// the durable must exist, and is never created or updated.
    pub fn binds(&self) -> bool {
        self.options.bind == Some(true)
    }

    /// Whether a delivery is acknowledged before its call (`ack = "first"`):
    /// at most once.
    pub fn acks_first(&self) -> bool {
        self.options.ack == Some(Ack::First)
    }

    /// The backoff delays, the default cut to fit `max_deliver`.
    pub fn backoff(&self) -> &'static [Duration] {
        self.options
            .backoff
            .unwrap_or_else(|| defaults::backoff(self.max_deliver()))
    }

    /// How long the server waits for an ack or progress.
    pub fn ack_wait(&self) -> Duration {
        self.options.ack_wait.unwrap_or(defaults::ACK_WAIT)
    }

    /// Calls in flight per process; a singleton's default is one.
    pub fn concurrency(&self) -> u32 {
        let default = if self.singleton() {
            1
        } else {
            defaults::CONCURRENCY
        };
        self.options.concurrency.unwrap_or(default)
    }

    /// One replica consumes at a time (`singleton = true`).
    pub fn singleton(&self) -> bool {
        self.options.singleton == Some(true)
    }

    /// The number of partitions (`partitions = N`), if partitioned.
    pub fn partitions(&self) -> Option<u32> {
        self.options.partitions
    }

    /// Where a new event durable starts.
    pub fn deliver(&self) -> Deliver {
        self.options.deliver.unwrap_or(Deliver::New)
    }

    /// The retry policy `classify` applies.
    pub fn policy(&self) -> Policy {
        Policy {
            max_deliver: self.max_deliver(),
            backoff: self.backoff(),
        }
    }

    /// Whether it reads dead letters (`#[subscribe("dlq.>")]`): its own
    /// failures are never dead-lettered, or every failure would feed it
    /// another letter.
    pub fn reads_dead_letters(&self) -> bool {
        self.subject.split('.').next() == Some(jetwire_grammar::subject::DLQ_TOKEN)
    }

    /// How long a message of this handler may keep coming back: every
    /// retry's backoff, plus an `ack_wait` per run. A follow-up it
    /// publishes on its last run is a republish of the one on its first,
    /// that long after.
    /// Counted up to `cap`.
    pub(crate) fn retry_span(&self, cap: Duration) -> Duration {
        let policy = self.policy();
        let mut span = self.ack_wait();
        for attempt in 1..self.max_deliver() {
            if span >= cap {
                break;
            }
            span = span
                .saturating_add(policy.delay(attempt))
                .saturating_add(self.ack_wait());
        }
        span.min(cap)
    }

    /// Its durable consumer's name in `app` ([`names::durable_for`]).
    pub(crate) fn durable(&self, prefix: Option<&str>, app: &str) -> String {
        names::durable_for(
            prefix,
            app,
            self.kind,
            self.name,
            self.subject,
            self.options.durable,
        )
    }

    /// How its deliveries name it: through `stream` and `durable`.
    pub(crate) fn route(&self, stream: Arc<str>, durable: Arc<str>) -> Route {
        Route {
            handler: self.name,
            stream,
            durable,
            max_deliver: self.max_deliver(),
        }
    }

    /// The stream it binds to unless one already captures its subject:
    /// the `stream` option, else the default stream for its kind.
    pub(crate) fn stream(&self, prefix: Option<&str>) -> String {
        match (self.options.stream, self.kind) {
            (Some(s), _) => s.to_owned(),
            (None, Kind::Queue) => names::queue_stream(prefix),
            (None, Kind::Subscribe) => names::default_stream(prefix, self.subject),
        }
    }

    /// The state types this handler needs.
    pub(crate) fn required_states(&self) -> impl Iterator<Item = StateKey> + '_ {
        self.requires.iter().filter_map(|f| f())
    }
}

impl fmt::Debug for HandlerDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerDef")
            .field("name", &self.name)
            .field("module", &self.module)
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Every handler linked into this binary, in a stable order (subject, then path).
pub fn handlers() -> Vec<&'static HandlerDef> {
    let mut all: Vec<&'static HandlerDef> = inventory::iter::<HandlerDef>.into_iter().collect();
    all.sort_by(|a, b| (a.subject, a.module, a.name).cmp(&(b.subject, b.module, b.name)));
    all
}

/// Keeps the handlers `selection` picks, in their order; what is wrong
/// with it, if anything: a name no handler answers to, worded with the
/// names there are.
pub(crate) fn select(
    handlers: &mut Vec<&'static HandlerDef>,
    selection: &Selection,
) -> Option<String> {
    let names = match selection {
        Selection::Kind(kind) => {
            handlers.retain(|h| h.kind == *kind);
            return None;
        }
        Selection::Names(names) => names,
    };
    let unknown = names
        .iter()
        .find(|n| !handlers.iter().any(|h| h.answers_to(n)))
        .map(|name| {
            let mut known: Vec<String> = handlers.iter().map(|h| h.path()).collect();
            known.sort();
            known.dedup();
            let known = if known.is_empty() {
                "this app has none".to_owned()
            } else {
                format!("one of: {}", known.join(", "))
            };
            format!(
                "no handler answers to `{name}`; write a handler's fn name or module path ({known})"
            )
        });
    handlers.retain(|h| names.iter().any(|n| h.answers_to(n)));
    unknown
}

/// The subject token filled from `JETWIRE_GROUPS` at startup.
pub(crate) const GROUP: &str = "{group}";

/// Each handler whose subject holds `{group}` once per group, the token
/// filled (a `#[subscribe]` handler's durable gets the group too, so each
/// group keeps its own place); the others as they are. Fails naming the
/// handler when it has the placeholder and no group is given.
pub(crate) fn fill_groups(
    handlers: Vec<&'static HandlerDef>,
    groups: &[String],
    app: &str,
) -> Result<Vec<&'static HandlerDef>, Error> {
    let mut out = Vec::with_capacity(handlers.len());
    for def in handlers {
        if !def.subject.split('.').any(|t| t == GROUP) {
            out.push(def);
            continue;
        }
        if groups.is_empty() {
            return Err(Error::Config(format!(
                "handler `{}` reads `{}`: set JETWIRE_GROUPS to the groups this process serves, e.g. JETWIRE_GROUPS=gpu or JETWIRE_GROUPS=gpu,cpu",
                def.path(),
                def.subject
            )));
        }
        for group in groups {
            out.push(filled(def, group, app));
        }
    }
    Ok(out)
}

/// `def` with its `{group}` token filled with `group` in `app`, made once
/// per (handler, group, app) for the life of the process and then reused:
/// a handler's definition is `'static`, and an app started again (or asked
/// for its permissions) does not make another.
fn filled(def: &'static HandlerDef, group: &str, app: &str) -> &'static HandlerDef {
    type Made = HashMap<(usize, String, String), &'static HandlerDef>;
    static MADE: OnceLock<Mutex<Made>> = OnceLock::new();
    let key = (
        def as *const HandlerDef as usize,
        group.to_owned(),
        app.to_owned(),
    );
    let mut made = MADE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    made.entry(key).or_insert_with(|| {
        let mut filled = *def;
        filled.subject = Box::leak(def.subject.replace(GROUP, group).into_boxed_str());
        if def.kind == Kind::Subscribe {
            let durable = match def.options.durable {
                Some(d) => format!("{d}-{group}"),
                None => format!("{app}-{}-{group}", def.name),
            };
            filled.options.durable = Some(Box::leak(durable.into_boxed_str()));
        }
        Box::leak(Box::new(filled))
    })
}

/// The startup checks shared by `App` and `TestApp`: duplicate and
/// overlapping work queues, duplicate durables, and missing state.
pub(crate) fn check(
    handlers: &[&'static HandlerDef],
    app: &str,
    states: &States,
) -> Result<(), Error> {
    let mut problems = Vec::new();
    for (i, a) in handlers.iter().enumerate() {
        for b in &handlers[i + 1..] {
            if a.kind == Kind::Queue && b.kind == Kind::Queue {
                if a.subject == b.subject {
                    problems.push(Problem::DuplicateQueue {
                        subject: a.subject.to_owned(),
                        handlers: [a.path(), b.path()],
                    });
                    continue;
                }
                if subject::overlaps(a.subject, b.subject) {
                    problems.push(Problem::OverlappingQueues {
                        subjects: [a.subject.to_owned(), b.subject.to_owned()],
                        handlers: [a.path(), b.path()],
                    });
                    continue;
                }
            }
            let (da, db) = (a.durable(None, app), b.durable(None, app));
            if da == db {
                problems.push(Problem::DuplicateDurable {
                    durable: da,
                    handlers: [a.path(), b.path()],
                });
            }
        }
        for key in a.required_states() {
            if !states.contains(key.id) {
                let type_name = key.name.to_owned();
                let problem = Problem::MissingState {
                    handler: a.path(),
                    type_name,
                };
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Handlers(Problems(problems)))
    }
}
