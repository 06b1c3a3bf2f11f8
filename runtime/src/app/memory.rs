//! Starting an app with no server (`NATS_URL=memory://`): its handlers on
//! the in-process engine, supervised as the loops of a live app are.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::Error;
use crate::handler::middleware::Middlewares;
use crate::handler::registry::HandlerDef;
use crate::handler::state::States;
use crate::memory::{Engine, Setup};
use crate::observe::health::{Phase, Readiness};
use crate::observe::http;
use crate::publish::Publisher;
use crate::publish::local::{self, Local};
use crate::service::Service;

use super::running::RunningApp;
use super::tasks::{Tasks, supervise};

/// What an app on `memory://` starts with, its checks passed.
pub(super) struct InMemory {
    pub(super) config: Config,
    pub(super) handlers: Vec<&'static HandlerDef>,
    pub(super) states: States,
    pub(super) middlewares: Middlewares,
    pub(super) services: Vec<Box<dyn Service>>,
    pub(super) client: Option<async_nats::Client>,
    pub(super) readiness: Arc<Readiness>,
    pub(super) listener: Option<http::Listener>,
}

/// Starts the handlers in process: consuming once this returns.
pub(super) fn start(app: InMemory) -> Result<RunningApp, Error> {
    if app.client.is_some() {
        return Err(Error::Config(
            "App::with_client gives the app a connection, and NATS_URL=memory:// runs it with none: drop one of them".into(),
        ));
    }
    if let Some(service) = app.services.first() {
        return Err(Error::Config(format!(
            "App::service(`{}`): services are given the app's JetStream, and NATS_URL=memory:// has no server; run them against a nats-server, or leave them out in memory",
            service.name()
        )));
    }
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let started = Engine::start(Setup {
        app: &app.config.app,
        handlers: &app.handlers,
        states: Arc::new(app.states),
        middlewares: Arc::new(app.middlewares),
        stop: stop.clone(),
        abort: abort.clone(),
    });
    let mut tasks = Tasks::default();
    for lane in started.tasks {
        tasks.spawn(lane.name, lane.task);
    }
    let local: Arc<dyn Local> = started.engine.clone();
    local::install(&local);
    tracing::info!(
        app = %app.config.app,
        handlers = app.handlers.len(),
        "running in memory (NATS_URL=memory://): no server; nothing outlives the process"
    );
    app.readiness.serverless();
    app.readiness.handlers(
        started
            .stats
            .iter()
            .map(|(def, _, c)| (def.name, c.consuming.clone()))
            .collect(),
    );
    app.readiness.set_phase(Phase::Running);
    let (failed, failure) = tokio::sync::watch::channel(None);
    let supervisor = tokio::spawn(supervise(tasks, stop.clone(), failed));
    let publisher = Publisher::in_memory(started.engine, Arc::new(app.config.clone()));
    Ok(RunningApp {
        config: app.config,
        publisher,
        supervisor,
        failure,
        stop,
        abort,
        stats: started.stats,
        readiness: app.readiness,
        listener: app.listener,
    })
}
