//! Every handler the macros registered, and the checks that must pass before
//! any of them runs.

use std::any::TypeId;
use std::fmt;
use std::time::Duration;

use jetwire_grammar::{defaults, subject};

use crate::classify::Policy;
use crate::context::States;
use crate::extract::{CallFuture, Delivery};
use crate::topology;

/// Which attribute declared a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `#[subscribe]`: an event handler; every app gets a copy.
    Subscribe,
    /// `#[queue]`: a work-queue handler; each job is done once.
    Queue,
}

/// Where a new event durable starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Deliver {
    /// Only messages published after the durable is created.
    New,
    /// Every message in the stream.
    All,
}

/// The options as written in the attribute; `None` is the default.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HandlerOptions {
    pub max_deliver: Option<u32>,
    pub backoff: Option<&'static [Duration]>,
    pub ack_wait: Option<Duration>,
    pub concurrency: Option<u32>,
    pub timeout: Option<Duration>,
    pub deliver: Option<Deliver>,
    pub durable: Option<&'static str>,
    pub stream: Option<&'static str>,
}

/// A state type a handler needs (`State<T>`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    pub id: TypeId,
    pub name: &'static str,
}

/// One registered handler, built by `#[subscribe]`/`#[queue]`.
#[doc(hidden)]
pub struct HandlerDef {
    pub name: &'static str,
    pub module: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub kind: Kind,
    pub subject: &'static str,
    pub payload: &'static str,
    pub options: HandlerOptions,
    pub requires: &'static [fn() -> Option<StateKey>],
    pub call: fn(Delivery) -> CallFuture,
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

    /// Deliveries before dead-lettering.
    pub fn max_deliver(&self) -> u32 {
        self.options.max_deliver.unwrap_or(defaults::MAX_DELIVER)
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

    /// Calls in flight per process.
    pub fn concurrency(&self) -> u32 {
        self.options.concurrency.unwrap_or(defaults::CONCURRENCY)
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

/// One reason the registered handlers cannot run together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Two `#[queue]` handlers on one subject.
    DuplicateQueue {
        /// The subject.
        subject: String,
        /// Both handlers, as `module::fn`.
        handlers: [String; 2],
    },
    /// Two `#[queue]` subjects that match a common subject: a work-queue
    /// stream refuses consumers whose filters overlap.
    OverlappingQueues {
        /// Both subjects.
        subjects: [String; 2],
        /// Both handlers, as `module::fn`.
        handlers: [String; 2],
    },
    /// Two handlers whose durable consumer would have the same name.
    DuplicateDurable {
        /// The durable name.
        durable: String,
        /// Both handlers, as `module::fn`.
        handlers: [String; 2],
    },
    /// A handler takes `State<T>` but no `T` was given.
    MissingState {
        /// The handler, as `module::fn`.
        handler: String,
        /// The missing type.
        type_name: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicateQueue {
                subject,
                handlers: [a, b],
            } => write!(
                f,
                "two #[queue] handlers on `{subject}`: `{a}` and `{b}`; a job is done once, by one handler: remove one or give it another subject"
            ),
            Problem::OverlappingQueues {
                subjects: [sa, sb],
                handlers: [a, b],
            } => write!(
                f,
                "#[queue] subjects `{sa}` (`{a}`) and `{sb}` (`{b}`) overlap; a job must have exactly one handler: make the subjects disjoint"
            ),
            Problem::DuplicateDurable {
                durable,
                handlers: [a, b],
            } => write!(
                f,
                "handlers `{a}` and `{b}` would share the durable consumer `{durable}` and steal each other's messages: rename one fn or set `durable = \"..\"` on one"
            ),
            Problem::MissingState { handler, type_name } => write!(
                f,
                "handler `{handler}` takes `State<{type_name}>` but no `{type_name}` was given: add `.state(value)` with a `{type_name}` to the App (or TestApp)"
            ),
        }
    }
}

/// Every problem found by the startup checks, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems with the registered handlers:", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// The startup checks shared by `App` and `TestApp`: duplicate and
/// overlapping work queues, duplicate durables, and missing state.
pub(crate) fn check(
    handlers: &[&'static HandlerDef],
    app: &str,
    states: &States,
) -> Result<(), crate::Error> {
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
            let (da, db) = (
                topology::durable_name(None, app, a),
                topology::durable_name(None, app, b),
            );
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
        Err(crate::Error::Handlers(Problems(problems)))
    }
}
