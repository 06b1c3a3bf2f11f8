//! [`App`], [`RunningApp`] and [`run`]: connect, bind, consume, shut down.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::asyncapi;
use crate::config::{AppOrigin, Config, Provision, StreamSettings, watch_reconnects};
use crate::directory::{Identity, Registration};
use crate::dlq::advisory;
use crate::error::Error;
use crate::handler::context::Env;
use crate::handler::middleware::{Middleware, Middlewares};
use crate::handler::registry::{self, HandlerDef};
use crate::handler::state::States;
use crate::observe::health::{Phase, Readiness};
use crate::observe::http;
use crate::protocol::{checkpoints, signals, streamed};
use crate::publish::Publisher;
use crate::publish::outlet::JetStreamOutlet;
use crate::service::{self, Service, ServiceContext};
use crate::topology;

mod configured;
mod loops;
mod memory;
mod running;
mod selection;
mod tasks;

use loops::Loops;
pub use running::{HandlerStats, RunningApp};
use selection::chosen;
use tasks::{Tasks, supervise};

/// Runs every handler linked into the binary until SIGINT or SIGTERM.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> Result<(), jetwire::Error> {
///     jetwire::run(jetwire::Config::from_env()?).await
/// }
/// ```
pub async fn run(config: Config) -> Result<(), Error> {
    App::new(config).run().await
}

/// An app: a config, state for the handlers, and every registered handler.
///
/// ```no_run
/// # #[derive(Clone)] struct Mailer;
/// # async fn demo() -> Result<(), jetwire::Error> {
/// let config = jetwire::Config::from_env()?;
/// let running = jetwire::App::new(config).state(Mailer).start().await?; // consuming now
/// running.shutdown().await?;                                           // drain, then stop
/// # Ok(()) }
/// ```
pub struct App {
    config: Config,
    states: States,
    handlers: Vec<&'static HandlerDef>,
    /// A connection the user brought ([`App::with_client`]).
    client: Option<async_nats::Client>,
    services: Vec<Box<dyn Service>>,
    /// The app's own version (for the AsyncAPI document) and labels, as
    /// its worker directory record gives them.
    identity: Identity,
    middlewares: Middlewares,
    /// Handlers given in code that failed their checks: the first fails
    /// [`App::start`].
    mistakes: Vec<String>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field(
                "handlers",
                &self.handlers.iter().map(|h| h.path()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app running every handler linked into this binary.
    pub fn new(config: Config) -> App {
        App {
            config,
            states: States::default(),
            handlers: registry::handlers(),
            client: None,
            identity: Identity::default(),
            services: Vec::new(),
            middlewares: Middlewares::default(),
            mistakes: Vec::new(),
        }
    }

    /// Runs `middleware` around every handler's calls, inside the
    /// middleware added before: the first added is the outermost. See
    /// [`middleware`](crate::middleware).
    ///
    /// ```
    /// use jetwire::middleware::{from_fn, Next};
    /// use jetwire::{App, Delivery, HandlerError};
    ///
    /// async fn logged(delivery: Delivery, next: Next) -> Result<(), HandlerError> {
    ///     let (handler, attempt) = (delivery.handler(), delivery.attempt());
    ///     let result = next.run(delivery).await;
    ///     if let Err(error) = &result {
    ///         tracing::warn!(handler, attempt, %error, "call failed");
    ///     }
    ///     result
    /// }
    ///
    /// let config = jetwire::Config::builder().app("billing").build().unwrap();
    /// let app = App::new(config).middleware(from_fn(logged));
    /// # drop(app);
    /// ```
    pub fn middleware(mut self, middleware: impl Middleware) -> App {
        self.middlewares.add(None, Arc::new(middleware));
        self
    }

    /// Runs `layer` around every handler's calls, as one more
    /// [`App::middleware`]: any `tower::Layer` over
    /// [`HandlerService`](crate::middleware::HandlerService), so tower's
    /// limits and timeouts, and layers of your own, work unchanged. The
    /// layer's service is built once; each call runs a clone of it.
    ///
    /// ```
    /// let config = jetwire::Config::builder().app("billing").build().unwrap();
    /// let app = jetwire::App::new(config).layer(tower::limit::ConcurrencyLimitLayer::new(4));
    /// # drop(app);
    /// ```
    #[cfg(feature = "tower")]
    pub fn layer(self, layer: impl crate::handler::layer::HandlerLayer) -> App {
        self.middleware(crate::handler::layer::layered(layer))
    }

    /// [`App::middleware`] for the handlers answering to `handler` (a fn
    /// name or `module::fn` path) only. A name no handler answers to fails
    /// [`App::start`], naming the handlers there are.
    pub fn middleware_for(mut self, handler: &str, middleware: impl Middleware) -> App {
        self.middlewares
            .add(Some(handler.to_owned()), Arc::new(middleware));
        self
    }

    /// Runs `service` beside the handlers: started once the app is
    /// connected and its streams bound, told to stop when the app drains,
    /// and waited for before the final flush. See [`Service`].
    pub fn service(mut self, service: impl Service) -> App {
        self.services.push(Box::new(service));
        self
    }

    /// Runs on a connection the caller made, instead of connecting with
    /// the config's URL, credentials and TLS (the rest of the config still
    /// applies). Shutdown flushes it but leaves it open: it is the caller's.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use jetwire::async_nats;
    ///
    /// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let config = jetwire::Config::from_env()?;
    /// let running = jetwire::App::new(config).with_client(client).start().await?;
    /// running.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_client(mut self, client: async_nats::Client) -> App {
        self.client = Some(client);
        self
    }

    /// Settings for one stream jetwire creates, by its name without the
    /// subject prefix (`ORDERS`, `QUEUE`, `DLQ`), over `Config::streams`.
    /// An existing stream is never changed: where its settings are weaker,
    /// startup says so.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jetwire::{App, Config, StreamSettings};
    ///
    /// let app = App::new(Config::default()).stream(
    ///     "ORDERS",
    ///     StreamSettings { max_age: Some(Duration::from_secs(90 * 86_400)), ..Default::default() },
    /// );
    /// # drop(app);
    /// ```
    pub fn stream(mut self, name: impl Into<String>, settings: StreamSettings) -> App {
        self.config.add_stream(name.into(), settings);
        self
    }

    /// The NATS permissions this app needs, for its handlers in their
    /// default streams (or those named with `stream = ..`), as a
    /// nats-server `permissions` block. Under `JETWIRE_PROVISION=bind`
    /// startup prints them when something is missing.
    pub fn permissions(&self) -> topology::Permissions {
        let handlers =
            registry::fill_groups(self.handlers.clone(), &self.config.groups, &self.config.app)
                .unwrap_or_else(|_| self.handlers.clone());
        let places: Vec<topology::Place> = handlers
            .iter()
            .map(|def| topology::Place::default_of(&self.config, def))
            .collect();
        topology::permissions(&self.config, &places)
    }

    /// Gives handlers taking `State<T>` this value (cloned into each call).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> App {
        self.states.insert(value);
        self
    }

    /// The app's version, shown as `info.version` in [`App::asyncapi`]
    /// (`0.0.0` unless given).
    pub fn version(mut self, version: impl Into<String>) -> App {
        self.identity.version = Some(version.into());
        self
    }

    /// Adds a label to this instance's worker directory record (what
    /// `jetwire workers` and [`directory::list`](crate::directory::list)
    /// show): where it runs, what build it is. A key given again keeps
    /// the last value.
    ///
    /// ```
    /// let config = jetwire::Config::builder().app("billing").build().unwrap();
    /// let app = jetwire::App::new(config)
    ///     .label("region", "eu-west-1")
    ///     .label("build", "2026-12-01.3");
    /// # drop(app);
    /// ```
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> App {
        let key = key.into();
        if key.trim().is_empty() || key.chars().any(char::is_control) {
            self.mistakes.push(format!(
                "App::label({key:?}, ..): a label needs a key of printable characters, such as \"region\""
            ));
            return self;
        }
        self.identity.labels.insert(key, value.into());
        self
    }

    /// The AsyncAPI 3.0 document of this app's handlers: a channel per
    /// subject (with the subject prefix), a `receive` operation per
    /// handler with its options (in `x-jetwire`; a work queue's durable as
    /// the NATS binding's `queue`), and the payload's JSON Schema where its
    /// type derives `schemars::JsonSchema` (feature `asyncapi`; a handler
    /// whose payload has none is listed without one).
    ///
    /// ```
    /// let config = jetwire::Config::builder().app("billing").build().unwrap();
    /// let doc = jetwire::App::new(config).version("1.4.0").asyncapi();
    /// assert_eq!(doc["asyncapi"], "3.0.0");
    /// assert_eq!(doc["info"]["title"], "billing");
    /// ```
    ///
    /// With `JETWIRE_ASYNCAPI=<path>` set, [`App::run`] and [`run`] write
    /// this document there and return without connecting.
    pub fn asyncapi(&self) -> serde_json::Value {
        asyncapi::document(
            &self.config,
            self.identity.version.as_deref().unwrap_or("0.0.0"),
            &self.handlers,
        )
    }

    /// Connects, binds every stream and durable, and starts consuming.
    /// Returns once every handler is consuming. Fails before consuming
    /// anything if the config or handlers are wrong, the server cannot be
    /// reached, or a stream or durable cannot be created or bound.
    pub async fn start(self) -> Result<RunningApp, Error> {
        let App {
            mut config,
            states,
            handlers,
            client,
            services,
            identity,
            mut middlewares,
            mistakes,
        } = self;
        let handlers = checked(&mut config, handlers, &states, &mut middlewares, mistakes)?;
        // Before anything is counted: the Prometheus recorder is installed
        // with the listener.
        let readiness = Arc::new(Readiness::default());
        let listener = listen(&config, &readiness).await?;
        if config.in_memory() {
            return memory::start(memory::InMemory {
                config,
                handlers,
                states,
                middlewares,
                services,
                client,
                readiness,
                listener,
            });
        }
        let (client, reconnects) = match client {
            Some(client) => {
                let reconnects = watch_reconnects(&client);
                (client, reconnects)
            }
            None => config.connect().await?,
        };
        readiness.connected_through(client.clone());
        topology::check_server(&client.server_info().version, &handlers)?;
        let js = config.jetstream(client.clone());
        let bindings = topology::ensure_all(&js, &config, &handlers).await?;

        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let states = Arc::new(states);
        let outlet = JetStreamOutlet {
            js: js.clone(),
            prefix: config.prefix().map(str::to_owned),
            reconnects: reconnects.clone(),
            partitions: Arc::default(),
        };
        let mut tasks = Tasks::default();
        let streams = advised_streams(&bindings);
        let shared_config = Arc::new(config.clone());
        if !streams.is_empty() {
            let capture = advisory::Capture {
                js: js.clone(),
                outlet: outlet.clone(),
                config: shared_config.clone(),
                streams,
            };
            let advisories = capture.ensure().await?;
            tasks.spawn(
                "the advisory reader",
                advisory::run(capture, advisories, stop.clone()).map(Ok),
            );
        }
        let shared_client = Arc::new(client.clone());
        let calls = call_env(&config, &js, states.clone(), &outlet, &shared_client, &stop);
        // Before the loops: a replica's id decides the partitions it reads.
        let registration = Registration::open(&js, &config, &identity, &handlers).await?;
        let loops = Loops {
            client: shared_client,
            reconnects: reconnects.clone(),
            js: js.clone(),
            outlet: outlet.clone(),
            calls,
            middlewares: Arc::new(middlewares),
            config: shared_config.clone(),
            stop: stop.clone(),
            abort: abort.clone(),
        };
        let stats = loops.spawn(&mut tasks, bindings, registration.instance());
        let publisher = Publisher::with_outlet(client.clone(), outlet, shared_config.clone());
        let ctx = ServiceContext {
            publisher: publisher.clone(),
            jetstream: js.clone(),
            config: shared_config.clone(),
            stop: stop.clone(),
        };
        start_services(&mut tasks, services, &ctx);
        tasks.spawn(
            "the worker directory's record of this replica",
            registration.keep(stop.clone()),
        );
        readiness.handlers(
            stats
                .iter()
                .map(|(def, _, c)| (def.name, c.consuming.clone()))
                .collect(),
        );
        readiness.set_phase(Phase::Running);
        let (failed, failure) = tokio::sync::watch::channel(None);
        let supervisor = tokio::spawn(supervise(tasks, stop.clone(), failed));
        Ok(RunningApp {
            config,
            publisher,
            supervisor,
            failure,
            stop,
            abort,
            stats,
            readiness,
            listener,
        })
    }

    /// [`App::start`], then consume until SIGINT or SIGTERM, then
    /// [`RunningApp::shutdown`]. A second signal stops at once: calls still
    /// running are dropped and their messages come back after `ack_wait`.
    ///
    /// A background task (a handler's loop, the advisory reader) that
    /// panics or ends on its own stops the app as well: `run` then shuts
    /// down and returns an error naming it, so the process ends instead of
    /// running on without a part it needs.
    pub async fn run(self) -> Result<(), Error> {
        if let Some(path) = &self.config.asyncapi {
            return write_asyncapi(path, &self.asyncapi());
        }
        self.start().await?.run_until_signal().await
    }
}

/// The handlers the app runs, once the startup checks pass: the config,
/// the choice of handlers, their groups, state and middleware.
fn checked(
    config: &mut Config,
    handlers: Vec<&'static HandlerDef>,
    states: &States,
    middlewares: &mut Middlewares,
    mistakes: Vec<String>,
) -> Result<Vec<&'static HandlerDef>, Error> {
    if let Some(mistake) = mistakes.into_iter().next() {
        return Err(Error::Config(mistake));
    }
    config.validate()?;
    let handlers = chosen(handlers, config)?;
    let handlers = registry::fill_groups(handlers, &config.groups, &config.app)?;
    registry::check(&handlers, &config.app, states)?;
    middlewares.resolve(&handlers)?;
    if handlers.is_empty() {
        tracing::warn!(
            "no handlers registered: annotate an async fn with #[subscribe] or #[queue]"
        );
    }
    config.need_duplicate_window(duplicate_window(&handlers));
    announce(config, &handlers);
    Ok(handlers)
}

/// The streams whose max-deliveries advisories the app captures. A
/// dead-letter handler's last delivery that never answered is not
/// dead-lettered again: its letter simply stays where it is.
fn advised_streams(
    bindings: &[(
        topology::Binding,
        async_nats::jetstream::consumer::PullConsumer,
    )],
) -> Vec<String> {
    let mut streams: Vec<String> = bindings
        .iter()
        .filter(|(b, _)| !b.def.reads_dead_letters())
        .map(|(b, _)| b.route.stream.to_string())
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

/// What every handler call's context shares.
fn call_env(
    config: &Config,
    js: &async_nats::jetstream::Context,
    states: Arc<States>,
    outlet: &JetStreamOutlet,
    client: &Arc<async_nats::Client>,
    stop: &CancellationToken,
) -> Arc<Env> {
    let create = config.provision == Provision::Create;
    Arc::new(Env {
        states,
        outlet: Arc::new(outlet.clone()),
        acks: Some(client.clone()),
        draining: stop.clone(),
        checkpoints: Arc::new(checkpoints::Bucket::new(
            js.clone(),
            config.prefix(),
            create.then(|| (config.replicas(), config.storage())),
        )),
        signals: Arc::new(signals::Bucket::new(
            js.clone(),
            config.prefix(),
            create.then(|| (config.replicas(), config.storage())),
        )),
        streamed: Arc::new(streamed::Bucket::new(
            js.clone(),
            config.prefix(),
            create.then(|| (config.replicas(), config.storage())),
        )),
    })
}

/// Writes the AsyncAPI document for `JETWIRE_ASYNCAPI`.
fn write_asyncapi(path: &std::path::Path, document: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(document).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|e| {
        Error::Config(format!(
            "JETWIRE_ASYNCAPI={}: cannot write the AsyncAPI document there: {e}",
            path.display()
        ))
    })?;
    tracing::info!(path = %path.display(), "wrote the AsyncAPI document; not running");
    Ok(())
}

/// The HTTP listener, when `JETWIRE_HTTP_ADDR` is set.
async fn listen(
    config: &Config,
    readiness: &Arc<Readiness>,
) -> Result<Option<http::Listener>, Error> {
    let Some(addr) = config.http_addr else {
        return Ok(None);
    };
    http::listen(addr, readiness.clone())
        .await
        .map(Some)
        .map_err(|e| {
            Error::Config(format!(
                "JETWIRE_HTTP_ADDR={addr}: cannot listen there: {e}; choose a free port or unset it"
            ))
        })
}

/// Starts each service, supervised beside the handler loops.
fn start_services(tasks: &mut Tasks, services: Vec<Box<dyn Service>>, ctx: &ServiceContext) {
    for service in services {
        tracing::info!(service = service.name(), "starting service");
        let name = format!("service `{}`", service.name());
        tasks.spawn(name, service::supervised(service, ctx.clone()));
    }
}

/// The longest a message of these handlers may keep coming back (see
/// [`StreamSettings`]): what the streams jetwire creates remember message
/// ids for, unless the operator set a duplicate window. At most an hour:
/// the server keeps every id for the whole window.
fn duplicate_window(handlers: &[&'static HandlerDef]) -> Duration {
    const MOST: Duration = Duration::from_secs(3600);
    handlers
        .iter()
        .map(|def| def.retry_span(MOST))
        .max()
        .unwrap_or_default()
}

/// Logs who the app is: its name, where the name came from, and every
/// durable it reads through; warns when the name is the binary's, since
/// renaming the binary then renames the durables.
fn announce(config: &Config, handlers: &[&'static HandlerDef]) {
    let durables: Vec<String> = handlers
        .iter()
        .map(|def| def.durable(config.prefix(), &config.app))
        .collect();
    tracing::info!(app = %config.app, durables = ?durables, provision = ?config.provision, "starting");
    if config.app_origin() == AppOrigin::Binary && !handlers.is_empty() {
        tracing::warn!(
            app = %config.app,
            "the app name is the binary's file name: renaming the binary renames every durable, and a handler with deliver = \"new\" then skips what was published meanwhile; set JETWIRE_APP"
        );
    }
}

pub(super) async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
