//! Handlers given in code, in memory: as [`App::subscribe`](crate::App::subscribe)
//! and the rest.

use std::panic::Location;

use crate::error::Error;
use crate::handler::configured::{self, Handler};
use crate::handler::options::HandlerOptions;
use crate::handler::registry;
use crate::names::Kind;
use crate::testing::TestApp;

impl TestApp {
    /// Adds `handler` for the events on `subject`, as
    /// [`App::subscribe`](crate::App::subscribe) does; a mistake in the
    /// subject or options is the error of every publish and of
    /// [`TestApp::check`].
    #[track_caller]
    pub fn subscribe<H: Handler<A>, A>(self, subject: &str, handler: H) -> TestApp {
        self.add(Kind::Subscribe, subject, handler, HandlerOptions::new())
    }

    /// [`TestApp::subscribe`] with options.
    #[track_caller]
    pub fn subscribe_with<H: Handler<A>, A>(
        self,
        subject: &str,
        handler: H,
        options: HandlerOptions,
    ) -> TestApp {
        self.add(Kind::Subscribe, subject, handler, options)
    }

    /// Adds `handler` for the jobs on work-queue `subject`, as
    /// [`App::queue`](crate::App::queue) does.
    #[track_caller]
    pub fn queue<H: Handler<A>, A>(self, subject: &str, handler: H) -> TestApp {
        self.add(Kind::Queue, subject, handler, HandlerOptions::new())
    }

    /// [`TestApp::queue`] with options.
    #[track_caller]
    pub fn queue_with<H: Handler<A>, A>(
        self,
        subject: &str,
        handler: H,
        options: HandlerOptions,
    ) -> TestApp {
        self.add(Kind::Queue, subject, handler, options)
    }

    #[track_caller]
    fn add<H: Handler<A>, A>(
        mut self,
        kind: Kind,
        subject: &str,
        handler: H,
        options: HandlerOptions,
    ) -> TestApp {
        match configured::register(kind, subject, handler, options, Location::caller()) {
            Ok(def) if self.groups.is_empty() => self.handlers.push(def),
            Ok(def) => match registry::fill_groups(vec![def], &self.groups, &self.app) {
                Ok(filled) => self.handlers.extend(filled),
                Err(Error::Config(why)) => self.mistakes.push(why),
                Err(other) => self.mistakes.push(other.to_string()),
            },
            Err(mistake) => self.mistakes.push(mistake),
        }
        self
    }
}
