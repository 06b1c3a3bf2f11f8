//! [`Config`]: where the server is, who we are, how to stop, and what
//! jetwire may do to the server.
//!
//! | file | what |
//! |---|---|
//! | `env.rs` | [`Config::from_env`] |
//! | `context.rs` | `NATS_CONTEXT`, a `nats` CLI context |
//! | `url.rs` | credentials taken out of `NATS_URL` |
//! | `streams.rs` | [`Provision`] and [`StreamSettings`] |
//! | `builder.rs` | [`ConfigBuilder`] |
//! | `api.rs` | which JetStream: a domain, an API prefix |
//! | `connect.rs` | connecting, and failures explained |

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::stream as js_stream;
use jetwire_grammar::subject;

use crate::clock::SharedClock;
use crate::error::Error;
use crate::names;

mod api;
mod builder;
mod connect;
mod context;
mod env;
mod selection;
mod streams;
mod trace;
mod url;

pub use builder::ConfigBuilder;
pub(crate) use connect::{Reconnects, watch_reconnects};
pub(crate) use selection::Selection;
pub(crate) use streams::shortfalls;
pub use streams::{Provision, Storage, StreamSettings};
pub use trace::TraceContext;

/// How jetwire authenticates to NATS. `Debug` shows no secret.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `NATS_TOKEN`, or a token in `NATS_URL` (`nats://token@host`).
    Token(String),
    /// `NATS_USER` and `NATS_PASSWORD`, or `nats://user:password@host`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `NATS_CREDS`: a `.creds` file (JWT and seed).
    CredsFile(PathBuf),
    /// `NATS_NKEY` holding an NKey seed.
    NKey(String),
    /// `NATS_NKEY` holding the path of a seed file, as the `nats` CLI means it.
    NKeyFile(PathBuf),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Auth::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
            Auth::NKey(_) => f.write_str("NKey(***)"),
            Auth::NKeyFile(path) => f.debug_tuple("NKeyFile").field(path).finish(),
        }
    }
}

/// Whether `s` is an NKey seed (`S` + type + 56 base32 characters), as
/// opposed to the path of a file holding one.
pub(crate) fn looks_like_seed(s: &str) -> bool {
    s.len() == 58
        && s.starts_with('S')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// TLS settings: `NATS_TLS_CA`, `NATS_TLS_CERT`, `NATS_TLS_KEY` (or the
/// `nats` CLI's `NATS_CA`, `NATS_CERT`, `NATS_KEY`). Any of them makes
/// the connection require TLS.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// A root certificate (PEM) to trust.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key: Option<PathBuf>,
}

/// Where the app's name came from: a name taken from the binary changes
/// when the binary is renamed, and with it every durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppOrigin {
    Binary,
    Env,
    Code,
}

/// Everything jetwire needs to run. Build it from the environment with
/// [`Config::from_env`] or with [`Config::builder`]; the fields are public
/// to read, and to change on a built config.
///
/// `Debug` never shows a secret.
///
/// ```
/// use std::time::Duration;
/// use jetwire::Config;
///
/// let config = Config::builder()
///     .url("nats://127.0.0.1:4222")
///     .app("billing")
///     .subject_prefix("staging")
///     .shutdown_timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(config.app, "billing");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Server URL, or a comma-separated list for a cluster (`NATS_URL`).
    /// Never holds credentials once built: those go to `auth`.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// The service's name, used in durable names (`JETWIRE_APP`). Defaults
    /// to the binary's file name: renaming the binary then renames every
    /// durable, so set it in production.
    pub app: String,
    /// Prepended to every subject, stream and durable (`JETWIRE_SUBJECT_PREFIX`).
    pub subject_prefix: Option<String>,
    /// How long shutdown waits for in-flight calls (`JETWIRE_SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// Whether jetwire creates what it needs, or only binds (`JETWIRE_PROVISION`).
    pub provision: Provision,
    /// Settings of the streams jetwire creates (`JETWIRE_STREAM_*`);
    /// [`App::stream`](crate::App::stream) overrides them per stream.
    pub streams: StreamSettings,
    /// Where `/healthz`, `/readyz` and `/metrics` are served
    /// (`JETWIRE_HTTP_ADDR`, e.g. `0.0.0.0:9090`); off when `None`.
    pub http_addr: Option<std::net::SocketAddr>,
    /// How often each durable's backlog is read for the lag gauges
    /// (`JETWIRE_METRICS_INTERVAL`; feature `metrics`).
    pub metrics_interval: Duration,
    /// Where [`App::run`](crate::App::run) writes the AsyncAPI document
    /// instead of running (`JETWIRE_ASYNCAPI`).
    pub asyncapi: Option<std::path::PathBuf>,
    /// How long a worker directory record outlives its last refresh
    /// (`JETWIRE_WORKER_TTL`): a crashed instance is gone within it.
    pub worker_ttl: Duration,
    /// The groups this process serves (`JETWIRE_GROUPS`, a comma-separated
    /// list): each fills the `{group}` token of handler subjects.
    pub groups: Vec<String>,
    /// Which of the binary's handlers run (`JETWIRE_HANDLERS`): `queues`,
    /// `events`, or handler names separated by commas; every handler when
    /// `None`. A name no handler answers to fails
    /// [`App::start`](crate::App::start).
    pub handlers: Option<String>,
    /// Whether a handler's span continues the producer's trace or links
    /// to it (`JETWIRE_TRACE_CONTEXT`; feature `otel`).
    pub trace_context: TraceContext,
    /// The JetStream domain whose streams the app uses (`NATS_JS_DOMAIN`):
    /// a leaf node's or a hub's, reached through the server the app
    /// connects to; the connected server's own JetStream when `None`.
    /// See [`Config::jetstream_api`].
    pub jetstream_domain: Option<String>,
    /// The JetStream API's subject prefix (`NATS_JS_API_PREFIX`), for an
    /// account that imports another's JetStream under its own prefix;
    /// `$JS.API` when `None`. Set it or `jetstream_domain`, not both.
    pub jetstream_api_prefix: Option<String>,
    /// The time of day letters are stamped with and `within` filters
    /// read ([`ConfigBuilder::clock`]).
    clock: SharedClock,
    app_origin: AppOrigin,
    /// Per stream, by name without the prefix.
    stream_overrides: Vec<(String, StreamSettings)>,
    /// The duplicate window the app's handlers need, where none is set.
    needed_window: Duration,
}

/// The default server URL.
pub(crate) const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// NATS's own default duplicate window, and jetwire's least.
pub(crate) const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl Default for Config {
    fn default() -> Self {
        Config {
            url: DEFAULT_URL.to_owned(),
            auth: Auth::None,
            tls: Tls::default(),
            app: default_app(),
            subject_prefix: None,
            shutdown_timeout: Duration::from_secs(30),
            provision: Provision::Create,
            streams: StreamSettings::default(),
            http_addr: None,
            metrics_interval: Duration::from_secs(15),
            asyncapi: None,
            worker_ttl: Duration::from_secs(30),
            groups: Vec::new(),
            handlers: None,
            trace_context: TraceContext::Continue,
            jetstream_domain: None,
            jetstream_api_prefix: None,
            clock: SharedClock::default(),
            app_origin: AppOrigin::Binary,
            stream_overrides: Vec::new(),
            needed_window: MIN_DUPLICATE_WINDOW,
        }
    }
}

fn default_app() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_ref()
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("app");
    names::sanitize_app(stem)
}

impl Config {
    /// The clock the app reads.
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Reads the configuration from the environment:
    ///
    /// | variable | `nats` CLI name | field | default |
    /// |---|---|---|---|
    /// | `NATS_URL` (may hold `user:password@` or `token@`) | same | `url`, `auth` | `nats://127.0.0.1:4222` |
    /// | `NATS_TOKEN`, `NATS_USER` + `NATS_PASSWORD`, `NATS_CREDS` | same | `auth` | none |
    /// | `NATS_NKEY` (a seed file, or a seed) | same | `auth` | none |
    /// | `NATS_TLS_CA`, `NATS_TLS_CERT`, `NATS_TLS_KEY` | `NATS_CA`, `NATS_CERT`, `NATS_KEY` | `tls` | none |
    /// | `NATS_CONTEXT` (a context name, or its JSON file) | same | url, auth, TLS not set otherwise | none |
    /// | `JETWIRE_APP` | | `app` | the binary's name |
    /// | `JETWIRE_SUBJECT_PREFIX` | | `subject_prefix` | none |
    /// | `JETWIRE_SHUTDOWN_TIMEOUT` | | `shutdown_timeout` | `30s` |
    /// | `JETWIRE_PROVISION` (`create`, `bind`) | | `provision` | `create` |
    /// | `JETWIRE_STREAM_MAX_AGE`, `_MAX_BYTES`, `_DUPLICATE_WINDOW`, `_STORAGE`, `_REPLICAS` | | `streams` | see [`StreamSettings`] |
    /// | `JETWIRE_HTTP_ADDR` (`host:port`) | | `http_addr` | off |
    /// | `JETWIRE_METRICS_INTERVAL` | | `metrics_interval` | `15s` |
    /// | `JETWIRE_ASYNCAPI` (a file path) | | `asyncapi` | none |
    /// | `JETWIRE_WORKER_TTL` | | `worker_ttl` | `30s` |
    /// | `JETWIRE_GROUPS` (`gpu,cpu`) | | `groups` | none |
    /// | `JETWIRE_HANDLERS` (`queues`, `events`, `send_email,on_order`) | | `handlers` | every handler |
    /// | `JETWIRE_TRACE_CONTEXT` (`continue`, `link`) | | `trace_context` | `continue` |
    /// | `NATS_JS_DOMAIN` (`leaf`), or a context's JetStream domain | | `jetstream_domain` | none |
    /// | `NATS_JS_API_PREFIX` (`JS.hub.API`), or a context's API prefix | | `jetstream_api_prefix` | none |
    ///
    /// Fails with a message naming the variable on a bad value, or on more
    /// than one kind of credentials.
    ///
    /// ```
    /// // SAFETY of the example: no other thread reads the environment.
    /// # unsafe { std::env::set_var("NATS_URL", "nats://svc:pw@127.0.0.1:4222") };
    /// let config = jetwire::Config::from_env().unwrap();
    /// assert_eq!(config.url, "nats://127.0.0.1:4222"); // the password went into `auth`
    /// assert!(matches!(config.auth, jetwire::Auth::UserPassword { .. }));
    /// ```
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Checks every field; `App::start` calls it too.
    pub fn validate(&self) -> Result<(), Error> {
        if self.url.trim().is_empty() {
            return Err(Error::Config(format!(
                "the NATS URL is empty: set NATS_URL, e.g. {DEFAULT_URL}"
            )));
        }
        if !self.in_memory() && url::entries(&self.url).iter().any(|u| url::is_memory(u)) {
            return Err(Error::Config(format!(
                "NATS_URL={}: memory:// runs the app in process and cannot be listed with servers; write NATS_URL=memory:// alone, or only servers",
                url::redact(&self.url)
            )));
        }
        jetwire_grammar::name::check(&self.app, jetwire_grammar::name::Kind::Durable).map_err(
            |e| {
                Error::Config(format!(
                    "app name (JETWIRE_APP) is used in durable names: {e}"
                ))
            },
        )?;
        if let Some(p) = &self.subject_prefix {
            subject::check(p, subject::Usage::Publish).map_err(|e| {
                Error::Config(format!(
                    "subject prefix (JETWIRE_SUBJECT_PREFIX) {p:?}: {e}"
                ))
            })?;
            if p.split('.').count() + 1 > subject::MAX_TOKENS {
                return Err(Error::Config(format!(
                    "subject prefix {p:?} leaves no room for subjects: use at most a few tokens"
                )));
            }
        }
        self.streams.check("stream settings")?;
        for group in &self.groups {
            if group.is_empty() || !group.chars().all(subject::is_token_char) {
                return Err(Error::Config(format!(
                    "JETWIRE_GROUPS: {group:?} is not a subject token: use letters, digits, `-` and `_`, e.g. JETWIRE_GROUPS=gpu,cpu"
                )));
            }
        }
        if let Some(handlers) = &self.handlers {
            Selection::parse(handlers)?;
        }
        if self.worker_ttl < Duration::from_secs(1) {
            return Err(Error::Config(
                "JETWIRE_WORKER_TTL is under a second: write a duration such as 30s".into(),
            ));
        }
        if self.metrics_interval.is_zero() {
            return Err(Error::Config(
                "JETWIRE_METRICS_INTERVAL is zero: write a duration such as 15s".into(),
            ));
        }
        for (name, settings) in &self.stream_overrides {
            settings.check(&format!("settings of stream `{name}`"))?;
        }
        self.check_jetstream_api()?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(Error::Config(
                "NATS_TLS_CERT and NATS_TLS_KEY go together: set both, or neither".into(),
            ));
        }
        Ok(())
    }

    /// Replicas of the streams jetwire creates without an override.
    pub(crate) fn replicas(&self) -> usize {
        self.streams.replicas.unwrap_or(1)
    }

    /// The storage of jetwire's own streams and buckets without an override.
    pub(crate) fn storage(&self) -> js_stream::StorageType {
        match self.streams.storage {
            Some(Storage::Memory) => js_stream::StorageType::Memory,
            _ => js_stream::StorageType::File,
        }
    }

    /// What the operator asked of stream `name` (with or without the
    /// prefix): its override, then the defaults.
    pub(crate) fn asked_for(&self, name: &str) -> StreamSettings {
        let full = |n: &str| names::prefixed_stream(self.prefix(), n);
        self.stream_overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name || full(n) == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
            .or(&self.streams)
    }

    /// [`Config::asked_for`], with the duplicate window the app's handlers
    /// need where none is set: what a stream jetwire creates gets.
    pub(crate) fn settings_for(&self, name: &str) -> StreamSettings {
        let mut s = self.asked_for(name);
        s.duplicate_window.get_or_insert(self.needed_window);
        s
    }

    /// Whether the app runs in process, with no server
    /// (`NATS_URL=memory://`): its handlers on the engine `TestApp` uses,
    /// in real time. Retries wait their real delays, dead letters are
    /// logged and kept in memory, and what handlers and
    /// [`Publisher`](crate::Publisher)s publish is delivered to the
    /// handlers of its subject. What needs a server (dead-letter
    /// operations, `status`, services, the CLI) says so. Nothing outlives
    /// the process: for local development and examples.
    ///
    /// ```
    /// let config = jetwire::Config::builder().url("memory://").app("billing").build().unwrap();
    /// assert!(config.in_memory());
    /// ```
    pub fn in_memory(&self) -> bool {
        url::is_memory(&self.url)
    }

    /// Notes the duplicate window the app's handlers need (see
    /// [`StreamSettings`]); used where the operator set none.
    pub(crate) fn need_duplicate_window(&mut self, window: Duration) {
        self.needed_window = window.max(MIN_DUPLICATE_WINDOW);
    }

    /// Adds settings for one stream.
    pub(crate) fn add_stream(&mut self, name: String, settings: StreamSettings) {
        self.stream_overrides.push((name, settings));
    }

    /// Where the app's name came from; a name set on the public field
    /// after building counts as set in code.
    pub(crate) fn app_origin(&self) -> AppOrigin {
        match self.app_origin {
            AppOrigin::Binary if self.app != default_app() => AppOrigin::Code,
            origin => origin,
        }
    }

    /// The config of a stream jetwire creates: its settings, and a
    /// description that says who made it.
    pub(crate) fn stream_config(
        &self,
        name: String,
        subjects: String,
        retention: js_stream::RetentionPolicy,
    ) -> js_stream::Config {
        let s = self.settings_for(&name);
        js_stream::Config {
            subjects: vec![subjects],
            retention,
            storage: match s.storage {
                Some(Storage::Memory) => js_stream::StorageType::Memory,
                _ => js_stream::StorageType::File,
            },
            num_replicas: s.replicas.unwrap_or(1),
            max_age: s.max_age.unwrap_or_default(),
            max_bytes: s
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            duplicate_window: s.duplicate_window.unwrap_or(MIN_DUPLICATE_WINDOW),
            description: Some("created by jetwire".to_owned()),
            name,
            ..Default::default()
        }
    }

    /// The prefix, if any and not empty.
    pub(crate) fn prefix(&self) -> Option<&str> {
        subject::set_prefix(self.subject_prefix.as_deref())
    }

    /// The URL list with any credentials hidden.
    pub fn redacted_url(&self) -> String {
        url::redact(&self.url)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.redacted_url())
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("app", &self.app)
            .field("subject_prefix", &self.subject_prefix)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("provision", &self.provision)
            .field("streams", &self.streams)
            .field("stream_overrides", &self.stream_overrides)
            .field("http_addr", &self.http_addr)
            .field("metrics_interval", &self.metrics_interval)
            .field("asyncapi", &self.asyncapi)
            .field("worker_ttl", &self.worker_ttl)
            .field("groups", &self.groups)
            .field("handlers", &self.handlers)
            .field("trace_context", &self.trace_context)
            .field("jetstream_domain", &self.jetstream_domain)
            .field("jetstream_api_prefix", &self.jetstream_api_prefix)
            .finish()
    }
}
