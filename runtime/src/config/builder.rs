//! [`ConfigBuilder`]: a [`Config`] field by field.

use std::time::Duration;

use crate::clock::{Clock, SharedClock};
use crate::config::{AppOrigin, Auth, Config, Provision, StreamSettings, Tls, TraceContext, url};
use crate::error::Error;

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    pub(super) config: Config,
}

impl ConfigBuilder {
    /// Server URL, or a comma-separated list. Credentials in it
    /// (`nats://user:password@host`, `nats://token@host`) are moved into
    /// the auth by [`ConfigBuilder::build`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }
    /// Credentials.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.config.auth = auth;
        self
    }
    /// TLS files.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.config.tls = tls;
        self
    }
    /// The service's name.
    pub fn app(mut self, app: impl Into<String>) -> Self {
        self.config.app = app.into();
        self.config.app_origin = AppOrigin::Code;
        self
    }
    /// Prepended to every subject, stream and durable.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.subject_prefix = Some(prefix.into());
        self
    }
    /// How long shutdown waits for in-flight calls.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }
    /// Replicas of the streams jetwire creates (`streams.replicas`).
    pub fn stream_replicas(mut self, replicas: usize) -> Self {
        self.config.streams.replicas = Some(replicas);
        self
    }
    /// Defaults for the streams jetwire creates.
    pub fn streams(mut self, settings: StreamSettings) -> Self {
        self.config.streams = settings;
        self
    }
    /// Settings for one stream, by its name without the prefix (`ORDERS`).
    pub fn stream(mut self, name: impl Into<String>, settings: StreamSettings) -> Self {
        self.config.add_stream(name.into(), settings);
        self
    }
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address.
    pub fn http_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.config.http_addr = Some(addr);
        self
    }
    /// How often the lag gauges are refreshed.
    pub fn metrics_interval(mut self, every: Duration) -> Self {
        self.config.metrics_interval = every;
        self
    }
    /// Make [`App::run`](crate::App::run) write the AsyncAPI document to
    /// this file and return, instead of running.
    pub fn asyncapi(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.asyncapi = Some(path.into());
        self
    }
    /// The groups this process serves: each fills the `{group}` token of
    /// handler subjects.
    pub fn groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.config.groups = groups.into_iter().map(Into::into).collect();
        self
    }
    /// Runs only some of the binary's handlers: `queues`, `events`, or
    /// handler names separated by commas.
    pub fn handlers(mut self, handlers: impl Into<String>) -> Self {
        self.config.handlers = Some(handlers.into());
        self
    }
    /// Whether a handler's span continues the producer's trace or links
    /// to it (feature `otel`).
    pub fn trace_context(mut self, trace_context: TraceContext) -> Self {
        self.config.trace_context = trace_context;
        self
    }
    /// Use the JetStream of domain `domain` (a leaf node's, a hub's),
    /// reached through the server the app connects to.
    ///
    /// ```
    /// let config = jetwire::Config::builder().jetstream_domain("leaf").build().unwrap();
    /// assert_eq!(config.jetstream_api(), "$JS.leaf.API");
    /// ```
    pub fn jetstream_domain(mut self, domain: impl Into<String>) -> Self {
        self.config.jetstream_domain = Some(domain.into());
        self
    }
    /// Use the JetStream an account imports under API prefix `prefix`.
    ///
    /// ```
    /// let config = jetwire::Config::builder().jetstream_api_prefix("JS.hub.API").build().unwrap();
    /// assert_eq!(config.jetstream_api(), "JS.hub.API");
    /// ```
    pub fn jetstream_api_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.jetstream_api_prefix = Some(prefix.into());
        self
    }
    /// The clock letters are stamped with and `within` filters read
    /// ([`SystemClock`](crate::clock::SystemClock) unless given): a
    /// [`ManualClock`](crate::clock::ManualClock) makes them exact in a
    /// test.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = SharedClock::new(clock);
        self
    }
    /// How long a worker directory record outlives its last refresh.
    pub fn worker_ttl(mut self, ttl: Duration) -> Self {
        self.config.worker_ttl = ttl;
        self
    }
    /// Create what is missing, or only bind.
    pub fn provision(mut self, provision: Provision) -> Self {
        self.config.provision = provision;
        self
    }
    /// The config, validated, with any credentials in the URL moved into
    /// the auth.
    pub fn build(mut self) -> Result<Config, Error> {
        let (urls, found) = url::take_credentials(&self.config.url)?;
        if let Some(auth) = found {
            if !matches!(self.config.auth, Auth::None) {
                return Err(Error::Config(
                    "NATS_URL carries credentials and other credentials are set too (NATS_TOKEN, NATS_USER, NATS_CREDS or NATS_NKEY): give one".into(),
                ));
            }
            self.config.auth = auth;
        }
        self.config.url = urls;
        self.config.validate()?;
        Ok(self.config)
    }
}
