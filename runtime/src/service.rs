//! [`Service`]: background work an [`App`](crate::App) runs beside its
//! handlers, such as an outbox relay or a table of dead letters. Started
//! once the app is connected and its streams bound; told to stop when the
//! app drains, and waited for before the app's final flush.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::Error;
use crate::publish::Publisher;

/// A boxed future that can be sent between threads: what
/// [`Service::run`] returns (`Box::pin(async move { .. })`).
pub type BoxFuture<'a, T> = futures_util::future::BoxFuture<'a, T>;

/// Background work run by an [`App`](crate::App): started after connect,
/// drained before the handlers' final flush. A service that returns an
/// error, ends before shutdown or panics stops the app with a log line and
/// an error naming it.
///
/// ```no_run
/// use jetwire::{BoxFuture, Error, Service, ServiceContext};
///
/// struct Heartbeat;
///
/// impl Service for Heartbeat {
///     fn name(&self) -> &str {
///         "heartbeat"
///     }
///     fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, Result<(), Error>> {
///         Box::pin(async move {
///             let shutdown = ctx.shutdown();
///             tokio::pin!(shutdown);
///             loop {
///                 tokio::select! {
///                     _ = &mut shutdown => return Ok(()),
///                     _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
///                         ctx.publisher().publish("status.alive", &"ok").await?;
///                     }
///                 }
///             }
///         })
///     }
/// }
///
/// # async fn demo() -> Result<(), jetwire::Error> {
/// jetwire::App::new(jetwire::Config::from_env()?).service(Heartbeat).run().await
/// # }
/// ```
pub trait Service: Send + 'static {
    /// A short name for logs and errors.
    fn name(&self) -> &str;
    /// Runs until `ctx.shutdown()` resolves, then returns after finishing
    /// its current step.
    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, Result<(), Error>>;
}

/// What a [`Service`] works with: the app's connection (as a publisher
/// and a JetStream context), its config, and the signal to stop.
#[derive(Clone)]
pub struct ServiceContext {
    pub(crate) publisher: Publisher,
    pub(crate) jetstream: async_nats::jetstream::Context,
    pub(crate) config: Arc<Config>,
    pub(crate) stop: CancellationToken,
}

impl fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceContext")
            .field("config", &self.config)
            .field("stopping", &self.stop.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl ServiceContext {
    /// A publisher on the app's connection, with its subject prefix.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// JetStream on the app's connection.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.jetstream
    }

    /// The app's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Resolves when the app starts draining.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Whether the app has started draining.
    pub fn is_shutting_down(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Runs `service` to its end: its error, if it failed. (A panic, or an
/// end before shutdown, is the supervisor's to tell: `app::tasks`.)
pub(crate) async fn supervised(
    service: Box<dyn Service>,
    ctx: ServiceContext,
) -> Result<(), Error> {
    service.run(ctx).await
}
