//! [`App`], [`RunningApp`] and [`run`]: connect, bind, consume, shut down.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{AppOrigin, Config, StreamSettings, watch_reconnects};
use crate::consume::{self, Counters, Shared};
use crate::dlq::advisory;
use crate::error::Error;
use crate::handler::registry::{self, HandlerDef};
use crate::handler::state::States;
use crate::observe::health::{Health, Phase, Readiness};
use crate::observe::http;
use crate::publish::Publisher;
use crate::publish::outlet::JetStreamOutlet;
use crate::service::{self, Service, ServiceContext};
use crate::text;
use crate::topology;

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
            services: Vec::new(),
        }
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
        let places: Vec<topology::Place> = self
            .handlers
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

    /// Keeps only the handlers with these fn names (or `module::fn` paths):
    /// to split one binary's handlers across deployments.
    pub fn only(mut self, names: &[&str]) -> App {
        self.handlers
            .retain(|h| names.iter().any(|n| h.answers_to(n)));
        self
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
        } = self;
        config.validate()?;
        registry::check(&handlers, &config.app, &states)?;
        if handlers.is_empty() {
            tracing::warn!(
                "no handlers registered: annotate an async fn with #[subscribe] or #[queue]"
            );
        }
        config.need_duplicate_window(duplicate_window(&handlers));
        announce(&config, &handlers);
        // Before anything is counted: the Prometheus recorder is installed
        // with the listener.
        let readiness = Arc::new(Readiness::default());
        let listener = listen(&config, &readiness).await?;
        let (client, reconnects) = match client {
            Some(client) => {
                let reconnects = watch_reconnects(&client);
                (client, reconnects)
            }
            None => config.connect().await?,
        };
        readiness.connected_through(client.clone());
        let js = async_nats::jetstream::new(client.clone());
        let bindings = topology::ensure_all(&js, &config, &handlers).await?;

        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let states = Arc::new(states);
        let outlet = JetStreamOutlet {
            js: js.clone(),
            prefix: config.prefix().map(str::to_owned),
            reconnects: reconnects.clone(),
        };
        let mut tasks = JoinSet::new();
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
            tasks.spawn(advisory::run(capture, advisories, stop.clone()).map(Ok));
        }
        let mut stats = Vec::with_capacity(bindings.len());
        let shared_client = Arc::new(client.clone());
        for (binding, consumer) in bindings {
            tracing::info!(
                handler = %binding.def.path(),
                subject = binding.def.subject,
                stream = %binding.route.stream,
                durable = %binding.route.durable,
                max_deliver = binding.def.max_deliver(),
                backoff = ?binding.def.backoff(),
                ack_wait = ?binding.def.ack_wait(),
                concurrency = binding.def.concurrency(),
                timeout = ?binding.def.options.timeout,
                "consuming"
            );
            let counters = Arc::new(Counters::new(binding.def.name));
            stats.push((
                binding.def,
                binding.route.durable.to_string(),
                counters.clone(),
            ));
            let shared = Arc::new(Shared {
                client: shared_client.clone(),
                reconnects: reconnects.clone(),
                resume_from: AtomicU64::new(0),
                binding,
                js: js.clone(),
                outlet: outlet.clone(),
                contexts_outlet: Arc::new(outlet.clone()),
                states: states.clone(),
                config: shared_config.clone(),
                counters,
            });
            tasks.spawn(consume::run(shared, consumer, stop.clone(), abort.clone()).map(Ok));
        }
        let ctx = ServiceContext {
            publisher: Publisher::with_outlet(
                client.clone(),
                outlet.clone(),
                shared_config.clone(),
            ),
            jetstream: js.clone(),
            config: shared_config.clone(),
            stop: stop.clone(),
        };
        start_services(&mut tasks, services, &ctx);
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
            client,
            outlet,
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
        let running = self.start().await?;
        let mut failure = running.failure.clone();
        tokio::select! {
            _ = signal() => {
                tracing::info!("signal received: draining in-flight calls (a second signal stops at once)");
            }
            _ = failure.wait_for(Option::is_some) => {}
        }
        tokio::select! {
            r = running.shutdown() => r,
            _ = signal() => Err(Error::Shutdown(
                "second signal: stopped at once; unfinished messages are redelivered after ack_wait".into(),
            )),
        }
    }
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
fn start_services(
    tasks: &mut JoinSet<Result<(), String>>,
    services: Vec<Box<dyn Service>>,
    ctx: &ServiceContext,
) {
    for service in services {
        tracing::info!(service = service.name(), "starting service");
        tasks.spawn(service::supervised(service, ctx.clone()));
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

async fn signal() {
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

/// A started app. Dropping it stops consuming at once; call
/// [`RunningApp::shutdown`] to drain first.
pub struct RunningApp {
    config: Config,
    client: async_nats::Client,
    /// What publishers of this app send through: the app's connection.
    outlet: JetStreamOutlet,
    /// Owns the handler loops and the advisory reader ([`supervise`]).
    supervisor: tokio::task::JoinHandle<Vec<String>>,
    /// Why the supervisor stopped the app, once it has.
    failure: tokio::sync::watch::Receiver<Option<String>>,
    stop: CancellationToken,
    abort: CancellationToken,
    stats: Vec<(&'static HandlerDef, String, Arc<Counters>)>,
    readiness: Arc<Readiness>,
    /// Serves `/healthz`, `/readyz` and `/metrics` until dropped.
    listener: Option<http::Listener>,
}

impl fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningApp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one handler did in this process so far.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerStats {
    /// The handler's fn name.
    pub handler: &'static str,
    /// Its subject.
    pub subject: &'static str,
    /// Its durable consumer.
    pub durable: String,
    /// Deliveries received.
    pub received: u64,
    /// Deliveries acked.
    pub acked: u64,
    /// Deliveries nak'ed for a retry.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Calls interrupted by the shutdown timeout and handed back.
    pub interrupted: u64,
}

impl RunningApp {
    /// A publisher sharing this app's connection and subject prefix.
    pub fn publisher(&self) -> Publisher {
        Publisher::with_outlet(
            self.client.clone(),
            self.outlet.clone(),
            Arc::new(self.config.clone()),
        )
    }

    /// The deployment's dead letters, on this app's connection.
    pub fn dead_letters(&self) -> crate::dlq::DeadLetters {
        crate::dlq::DeadLetters::on(self.publisher())
    }

    /// Each handler's counters in this process.
    pub fn stats(&self) -> Vec<HandlerStats> {
        self.stats
            .iter()
            .map(|(def, durable, c)| HandlerStats {
                handler: def.name,
                subject: def.subject,
                durable: durable.clone(),
                received: c.received.load(Ordering::Relaxed),
                acked: c.acked.load(Ordering::Relaxed),
                retried: c.retried.load(Ordering::Relaxed),
                dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                interrupted: c.interrupted.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Whether the app is ready, and what keeps it from being so: what
    /// `/readyz` answers.
    ///
    /// ```no_run
    /// # async fn f(config: jetwire::Config) -> Result<(), jetwire::Error> {
    /// let running = jetwire::App::new(config).start().await?;
    /// let health = running.health();
    /// assert!(health.live);
    /// println!("ready: {}, because: {:?}", health.ready, health.reasons);
    /// # Ok(()) }
    /// ```
    pub fn health(&self) -> Health {
        self.readiness.health()
    }

    /// The address `/healthz`, `/readyz` and `/metrics` are served on
    /// (`JETWIRE_HTTP_ADDR`, with the port the system chose for `:0`).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().map(http::Listener::addr)
    }

    /// Stops pulling, lets in-flight calls finish for up to
    /// `shutdown_timeout`, hands back (naks) what did not finish so a live
    /// replica gets it at once, flushes acks, and closes.
    ///
    /// Returns within `shutdown_timeout` plus 6 s whatever the server does
    /// (down, frozen, slow): what could not be handed back or flushed by
    /// then is named in the error, and comes back from the server after
    /// `ack_wait`; so is any background task that panicked.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.readiness.set_phase(Phase::Draining);
        self.stop.cancel();
        let mut problems = Vec::new();
        let timeout = self.config.shutdown_timeout;
        let supervisor = &mut self.supervisor;
        let joined = match tokio::time::timeout(timeout, &mut *supervisor).await {
            Ok(joined) => Some(joined),
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "shutdown timeout: interrupting the calls still running"
                );
                self.abort.cancel();
                let handed_back = tokio::time::timeout(SHUTDOWN_MARGIN, &mut *supervisor).await;
                if handed_back.is_err() {
                    supervisor.abort();
                    problems.push(format!(
                        "handler loops were still handing messages back {SHUTDOWN_MARGIN:?} after the calls were interrupted, and were stopped; their messages are redelivered after ack_wait"
                    ));
                }
                handed_back.ok()
            }
        };
        if let Some(joined) = joined {
            problems.extend(
                joined.unwrap_or_else(|e| vec![format!("the task supervisor failed: {e}")]),
            );
        }
        match tokio::time::timeout(SHUTDOWN_MARGIN, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!(
                "could not flush acks to the server: {e}; unacked messages are redelivered after ack_wait"
            )),
            Err(_) => problems.push(format!(
                "the server took no final flush within {SHUTDOWN_MARGIN:?}; unacked messages are redelivered after ack_wait"
            )),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Shutdown(problems.join("; ")))
        }
    }
}

/// How long shutdown waits, past `shutdown_timeout`, for interrupted calls
/// to be handed back, and then for the final flush.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// Owns the app's background tasks until they have all ended. One that
/// panics, or ends before shutdown has begun, stops the app: it is logged,
/// `failed` says why, and `stop` ends every other. Returns what went wrong.
async fn supervise(
    mut tasks: JoinSet<Result<(), String>>,
    stop: CancellationToken,
    failed: tokio::sync::watch::Sender<Option<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let why = match joined {
            Err(e) if e.is_panic() => format!(
                "a background task panicked: {}",
                text::bounded(&e.to_string(), 1024)
            ),
            Ok(Err(why)) => why,
            Ok(Ok(())) if !stop.is_cancelled() => {
                "a background task ended while the app was running".to_owned()
            }
            // Cancelled at shutdown, or ended because shutdown began.
            Err(_) | Ok(Ok(())) => continue,
        };
        tracing::error!(problem = %why, "stopping the app");
        failed.send_replace(Some(why.clone()));
        problems.push(why);
        stop.cancel();
    }
    problems
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.stop.cancel();
        self.abort.cancel();
        // Drops the tasks' set, which aborts them: at once, as documented.
        self.supervisor.abort();
    }
}
