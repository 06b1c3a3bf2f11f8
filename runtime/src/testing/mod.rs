//! [`TestApp`]: every registered handler, no server.
//!
//! Messages are routed to handlers by the same subject matching the live
//! runtime's streams apply, each call goes through the same decode, timeout
//! and panic handling, and every retry decision is made by the same
//! [`classify`](crate::classify::classify). Redeliveries happen at once with
//! virtual backoff (the delays are recorded, not slept), and what handlers
//! publish is delivered to the handlers of its subject in turn.
//!
//! ```
//! use jetwire::testing::TestApp;
//! use jetwire::{queue, DlqReason, HandlerError};
//!
//! #[queue("queue.doc-square", max_deliver = 2)]
//! async fn square(n: i64) -> Result<(), HandlerError> {
//!     if n < 0 { return Err(HandlerError::permanent("negative")); }
//!     Ok(())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = TestApp::new().only(&["square"]);
//! assert!(app.publish("queue.doc-square", &3).await.acked());
//! let report = app.publish("queue.doc-square", &-1).await;
//! assert_eq!(report.dlq_reason(), Some(DlqReason::Permanent));
//! assert_eq!(app.published("dlq.queue.doc-square").len(), 1);
//! # });
//! ```

mod configured;
mod report;

pub use report::{Published, Report, Run};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use jetwire_grammar::subject;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::classify::{Answer, Counted};
use crate::clock::ManualClock;
use crate::codecs::Encode;
use crate::config::Selection;
use crate::error::{Error, PublishError};
use crate::handler::context::Env;
use crate::handler::middleware::{Middleware, Middlewares};
use crate::handler::registry::{self, HandlerDef};
use crate::handler::state::States;
use crate::memory::log::{Log, lock};
use crate::memory::step::{self, Held, Lane};
use crate::partition;
use crate::policy::runs::Record;
use crate::protocol::signals;
use crate::protocol::streamed::{self, Output};
use crate::publish::message::{self, Inherited, Outbound, PublishOptions};
use crate::publish::outlet::Outlet;

/// How many deliveries one `publish` may cause, follow-ups included, before
/// `TestApp` decides handlers are publishing to each other in a loop.
const MAX_DELIVERIES: usize = 10_000;

/// Every registered handler, run in memory. See the [module docs](self).
pub struct TestApp {
    app: String,
    handlers: Vec<&'static HandlerDef>,
    states: States,
    log: Arc<Log>,
    sent: Arc<Sent>,
    /// Cancelled by [`TestApp::draining`]: what `ctx.shutdown()` awaits.
    draining: CancellationToken,
    middlewares: Middlewares,
    /// Handlers given in code that failed their checks, each message once.
    mistakes: Vec<String>,
    /// The groups [`TestApp::groups`] set: handlers given in code later
    /// are filled with them too.
    groups: Vec<String>,
}

/// What handlers published (and what was dead-lettered), and what waits
/// to be delivered.
#[derive(Default)]
struct Sent {
    published: Mutex<Vec<Published>>,
    pending: Mutex<VecDeque<Outbound>>,
}

impl Sent {
    fn record(&self, msg: &Outbound) {
        lock(&self.published).push(Published(msg.clone()));
    }
}

struct TestOutlet(Arc<Sent>);

impl Outlet for TestOutlet {
    fn publish(&self, msg: Outbound) -> BoxFuture<'_, Result<(), PublishError>> {
        self.0.record(&msg);
        lock(&self.0.pending).push_back(msg);
        Box::pin(async { Ok(()) })
    }
}

impl Default for TestApp {
    fn default() -> Self {
        TestApp::new()
    }
}

impl TestApp {
    /// Every handler linked into this binary, app name `test`.
    pub fn new() -> TestApp {
        TestApp {
            app: "test".to_owned(),
            handlers: registry::handlers(),
            states: States::default(),
            log: Arc::new(Log::virtual_time()),
            sent: Arc::default(),
            draining: CancellationToken::new(),
            middlewares: Middlewares::default(),
            mistakes: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Runs `middleware` around every handler's calls, as
    /// [`App::middleware`](crate::App::middleware) does.
    pub fn middleware(mut self, middleware: impl Middleware) -> TestApp {
        self.middlewares.add(None, Arc::new(middleware));
        self
    }

    /// Runs `layer` around every handler's calls, as
    /// [`App::layer`](crate::App::layer) does (feature `tower`).
    #[cfg(feature = "tower")]
    pub fn layer(self, layer: impl crate::handler::layer::HandlerLayer) -> TestApp {
        self.middleware(crate::handler::layer::layered(layer))
    }

    /// Runs `middleware` around the calls of the handlers answering to
    /// `handler`, as [`App::middleware_for`](crate::App::middleware_for) does.
    pub fn middleware_for(mut self, handler: &str, middleware: impl Middleware) -> TestApp {
        self.middlewares
            .add(Some(handler.to_owned()), Arc::new(middleware));
        self
    }

    /// Sends signal `name` to the handler of the message with id
    /// `message_id`, as [`Publisher::signal`](crate::Publisher::signal)
    /// does: a handler waiting for it (now or on a later publish) gets it.
    /// A signal not sent when a handler waits is a timeout at once
    /// (virtual time).
    pub fn signal<T: Serialize + ?Sized>(&self, message_id: &str, name: &str, value: &T) {
        let value = serde_json::to_vec(value).unwrap_or_default();
        self.log
            .signal(signals::key(message_id, name), value.into());
    }

    /// Runs on `clock` instead of the system's: letters, publishes and
    /// signals are stamped with its time, and every virtual wait (a
    /// retry's backoff, a `retry_after`) moves it on by that long, so a
    /// letter's `failed_at` after three retries is exact.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use jetwire::clock::{Clock, ManualClock};
    ///
    /// let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let clock = ManualClock::new(start);
    /// let app = jetwire::testing::TestApp::new().only(&[]).clock(clock.clone());
    /// # drop(app);
    /// assert_eq!(clock.now(), start);
    /// ```
    pub fn clock(self, clock: ManualClock) -> TestApp {
        self.log.set_clock(clock);
        self
    }

    /// Runs handlers as if the app had started to drain: `ctx.shutdown()`
    /// resolves at once and `ctx.is_shutting_down()` is true.
    pub fn draining(self) -> TestApp {
        self.draining.cancel();
        self
    }

    /// Serves these groups: each fills the `{group}` token of handler
    /// subjects, as `JETWIRE_GROUPS` does for an app.
    pub fn groups(mut self, groups: &[&str]) -> TestApp {
        self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        if let Ok(filled) =
            registry::fill_groups(std::mem::take(&mut self.handlers), &self.groups, &self.app)
        {
            self.handlers = filled;
        }
        self
    }

    /// Gives handlers taking `State<T>` this value.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> TestApp {
        self.states.insert(value);
        self
    }

    /// Keeps only the handlers with these fn names (or `module::fn` paths),
    /// as [`App::only`](crate::App::only) does: a name no handler answers
    /// to is the error of every publish and of [`TestApp::check`].
    pub fn only(mut self, names: &[&str]) -> TestApp {
        if let Some(unknown) = registry::select(&mut self.handlers, &Selection::named(names)) {
            self.mistakes.push(format!("TestApp::only: {unknown}"));
        }
        self
    }

    /// Keeps only the handlers of one kind, as
    /// [`App::only_kind`](crate::App::only_kind) does.
    pub fn only_kind(mut self, kind: registry::Kind) -> TestApp {
        registry::select(&mut self.handlers, &Selection::Kind(kind));
        self
    }

    /// Sets the app name used in durable names (default `test`).
    pub fn app_name(mut self, name: &str) -> TestApp {
        self.app = name.to_owned();
        self
    }

    /// The startup checks `App::start` makes: duplicate or overlapping
    /// work queues, duplicate durables, missing state, middleware for a
    /// handler that is not there.
    pub fn check(&self) -> Result<(), Error> {
        self.env().map(drop)
    }

    /// What every call shares, once the startup checks pass: the state,
    /// the in-memory log; and each handler's middleware chain.
    fn env(&self) -> Result<(Arc<Env>, Arc<Middlewares>), Error> {
        if let Some(mistake) = self.mistakes.first() {
            return Err(Error::Config(mistake.clone()));
        }
        registry::check(&self.handlers, &self.app, &self.states)?;
        let mut middlewares = self.middlewares.clone();
        middlewares.resolve(&self.handlers)?;
        let env = Arc::new(Env {
            states: Arc::new(self.states.clone()),
            outlet: Arc::new(TestOutlet(self.sent.clone())),
            acks: None,
            draining: self.draining.clone(),
            checkpoints: self.log.clone(),
            signals: self.log.clone(),
            streamed: self.log.clone(),
        });
        Ok((env, Arc::new(middlewares)))
    }

    /// Publishes `payload` as JSON to `subject` and delivers it, and
    /// everything its handlers publish, until all is settled.
    ///
    /// # Panics
    /// If the subject is invalid, the handlers fail the startup checks, or
    /// handlers keep publishing to each other past 10,000 deliveries.
    pub async fn publish<T: Encode + ?Sized>(&self, subject: &str, payload: &T) -> Report {
        self.publish_with(subject, payload, PublishOptions::new())
            .await
    }

    /// [`TestApp::publish`] with options (message id, headers).
    pub async fn publish_with<T: Encode + ?Sized>(
        &self,
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Report {
        let msg = message::build(
            subject,
            payload,
            options,
            &Inherited::default(),
            message::fresh_id,
        )
        .unwrap_or_else(|e| panic!("TestApp::publish: {e}"));
        self.run(msg).await
    }

    /// Publishes bytes as they are: for payloads that are not valid JSON.
    pub async fn publish_raw(&self, subject: &str, payload: impl Into<Bytes>) -> Report {
        let msg = message::build_bytes(
            subject,
            payload.into(),
            None,
            PublishOptions::new(),
            &Inherited::default(),
            message::fresh_id,
        )
        .unwrap_or_else(|e| panic!("TestApp::publish_raw: {e}"));
        self.run(msg).await
    }

    /// What handlers published to `subject` (and what jetwire dead-lettered
    /// to `dlq.<subject>`), in order. Not what the test itself published.
    pub fn published(&self, subject: &str) -> Vec<Published> {
        lock(&self.sent.published)
            .iter()
            .filter(|p| p.subject == subject)
            .cloned()
            .collect()
    }

    /// What `handler` streamed for the message with `message_id`
    /// ([`Context::stream_output`](crate::Context::stream_output)), as
    /// [`Publisher::follow_output`](crate::Publisher::follow_output) reads
    /// it: every delivery's chunks in order, each delivery's end.
    pub fn output(&self, message_id: &str, handler: &str) -> Vec<Output> {
        self.log.output(&streamed::keys(message_id, handler))
    }

    /// Every dead letter so far, in order.
    pub fn dead_letters(&self) -> Vec<Published> {
        lock(&self.sent.published)
            .iter()
            .filter(|p| subject::matches("dlq.>", &p.subject))
            .cloned()
            .collect()
    }

    async fn run(&self, first: Outbound) -> Report {
        let env = self.env().unwrap_or_else(|e| panic!("TestApp: {e}"));
        let mut report = self.deliver(&env, first).await;
        let mut deliveries = report.runs.len();
        loop {
            let next = lock(&self.sent.pending).pop_front();
            let Some(msg) = next else { break };
            let follow_up = self.deliver(&env, msg).await;
            deliveries += follow_up.runs.len().max(1);
            assert!(
                deliveries <= MAX_DELIVERIES,
                "TestApp: more than {MAX_DELIVERIES} deliveries for one publish; do handlers publish to each other in a loop?"
            );
            report.follow_ups.push(follow_up);
        }
        report
    }

    /// Delivers one message to every handler whose subject matches it.
    async fn deliver(&self, env: &(Arc<Env>, Arc<Middlewares>), msg: Outbound) -> Report {
        let mut report = Report {
            subject: msg.subject.clone(),
            runs: Vec::new(),
            follow_ups: Vec::new(),
        };
        let key = msg.headers.get(message::KEY).map(|k| k.as_str());
        let targets = self.handlers.iter().filter_map(|h| {
            partition::delivery(h.subject, h.partitions(), &msg.subject, key).map(|to| (h, to))
        });
        for (def, to) in targets {
            report.runs.push(self.run_handler(env, def, &msg, to).await);
        }
        report
    }

    /// Delivers `msg` on `subject` to one handler until it is acked or
    /// dead-lettered, each redelivery at once, its delay waited virtually.
    async fn run_handler(
        &self,
        (env, middlewares): &(Arc<Env>, Arc<Middlewares>),
        def: &'static HandlerDef,
        msg: &Outbound,
        (partition, subject): (Option<u32>, String),
    ) -> Run {
        let lane = Lane::new(def, &self.app, env.clone(), middlewares.clone());
        let mut held = Held {
            msg: Arc::new(msg.clone()),
            subject,
            sequence: self.log.next_sequence(&lane.route.stream),
            published_at: self.log.now(),
            deliveries: 0,
            record: Record::default(),
        };
        let mut run = Run {
            handler: def.name,
            attempts: 0,
            outcomes: Vec::new(),
            errors: Vec::new(),
            delays: Vec::new(),
            pauses: Vec::new(),
            continued: false,
            dlq_reason: None,
            discarded: false,
            failed_after_ack: false,
            partition,
        };
        loop {
            let step = step::deliver(&lane, &mut held, || self.log.now()).await;
            run.attempts = step.attempt;
            run.outcomes.push(step.outcome);
            run.errors.extend(step.failure);
            run.errors.extend(step.unpublished);
            if let Some(letter) = &step.letter {
                self.sent.record(letter);
            }
            let plan = step.plan;
            match plan.counted {
                Counted::DeadLettered(reason) | Counted::GaveUp(reason) => {
                    run.dlq_reason = Some(reason);
                }
                Counted::Discarded => run.discarded = true,
                Counted::FailedAfterAck => {
                    run.failed_after_ack = true;
                    run.dlq_reason = plan.letter;
                }
                Counted::Continued => run.continued = true,
                Counted::Paused | Counted::Acked | Counted::Retried => {}
            }
            match plan.answer {
                Answer::Nak(delay) => {
                    match plan.counted {
                        Counted::Paused => run.pauses.push(delay),
                        _ => run.delays.push(delay),
                    }
                    self.log.wait(delay);
                }
                Answer::Ack | Answer::Term | Answer::Already => break,
            }
        }
        run
    }
}
