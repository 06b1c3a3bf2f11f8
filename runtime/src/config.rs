//! [`Config`]: where the server is, who we are, and how to stop.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jetwire_grammar::{duration, subject};

use crate::error::Error;
use crate::names;

/// How jetwire authenticates to NATS.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `NATS_TOKEN`.
    Token(String),
    /// `NATS_USER` and `NATS_PASSWORD`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `NATS_CREDS`: a `.creds` file (JWT and seed).
    CredsFile(PathBuf),
    /// `NATS_NKEY`: an NKey seed.
    NKey(String),
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
        }
    }
}

/// TLS settings: `NATS_TLS_CA`, `NATS_TLS_CERT`, `NATS_TLS_KEY`.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// A root certificate (PEM) to trust.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key: Option<PathBuf>,
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
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// The service's name, used in durable names (`JETWIRE_APP`).
    pub app: String,
    /// Prepended to every subject, stream and durable (`JETWIRE_SUBJECT_PREFIX`).
    pub subject_prefix: Option<String>,
    /// How long shutdown waits for in-flight calls (`JETWIRE_SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// Replicas of the streams jetwire creates (`JETWIRE_STREAM_REPLICAS`).
    pub stream_replicas: usize,
}

/// The default server URL.
pub(crate) const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

impl Default for Config {
    fn default() -> Self {
        Config {
            url: DEFAULT_URL.to_owned(),
            auth: Auth::None,
            tls: Tls::default(),
            app: default_app(),
            subject_prefix: None,
            shutdown_timeout: Duration::from_secs(30),
            stream_replicas: 1,
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
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Reads the configuration from the environment:
    ///
    /// | variable | field | default |
    /// |---|---|---|
    /// | `NATS_URL` | `url` | `nats://127.0.0.1:4222` |
    /// | `NATS_TOKEN`, `NATS_USER` + `NATS_PASSWORD`, `NATS_CREDS`, `NATS_NKEY` | `auth` | none |
    /// | `NATS_TLS_CA`, `NATS_TLS_CERT`, `NATS_TLS_KEY` | `tls` | none |
    /// | `JETWIRE_APP` | `app` | the binary's name |
    /// | `JETWIRE_SUBJECT_PREFIX` | `subject_prefix` | none |
    /// | `JETWIRE_SHUTDOWN_TIMEOUT` | `shutdown_timeout` | `30s` |
    /// | `JETWIRE_STREAM_REPLICAS` | `stream_replicas` | 1 |
    ///
    /// Fails with a message naming the variable on a bad value, or on more
    /// than one kind of credentials.
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let mut b = Config::builder();
        if let Some(url) = get("NATS_URL") {
            b = b.url(url);
        }
        let mut auths = Vec::new();
        if let Some(t) = get("NATS_TOKEN") {
            auths.push(("NATS_TOKEN", Auth::Token(t)));
        }
        match (get("NATS_USER"), get("NATS_PASSWORD")) {
            (Some(user), Some(password)) => {
                auths.push(("NATS_USER", Auth::UserPassword { user, password }))
            }
            (Some(_), None) => {
                return Err(Error::Config(
                    "NATS_USER is set but NATS_PASSWORD is not: set both, or neither".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "NATS_PASSWORD is set but NATS_USER is not: set both, or neither".into(),
                ));
            }
            (None, None) => {}
        }
        if let Some(p) = get("NATS_CREDS") {
            auths.push(("NATS_CREDS", Auth::CredsFile(p.into())));
        }
        if let Some(k) = get("NATS_NKEY") {
            auths.push(("NATS_NKEY", Auth::NKey(k)));
        }
        match auths.len() {
            0 => {}
            1 => b = b.auth(auths.remove(0).1),
            _ => {
                let names: Vec<&str> = auths.iter().map(|(n, _)| *n).collect();
                return Err(Error::Config(format!(
                    "{} are all set: give one kind of credentials",
                    names.join(", ")
                )));
            }
        }
        b.config.tls = Tls {
            ca: get("NATS_TLS_CA").map(Into::into),
            cert: get("NATS_TLS_CERT").map(Into::into),
            key: get("NATS_TLS_KEY").map(Into::into),
        };
        if let Some(app) = get("JETWIRE_APP") {
            b = b.app(app);
        }
        if let Some(p) = get("JETWIRE_SUBJECT_PREFIX") {
            b = b.subject_prefix(p);
        }
        if let Some(t) = get("JETWIRE_SHUTDOWN_TIMEOUT") {
            let d = duration::parse(&t)
                .map_err(|e| Error::Config(format!("JETWIRE_SHUTDOWN_TIMEOUT: {e}")))?;
            b = b.shutdown_timeout(d);
        }
        if let Some(r) = get("JETWIRE_STREAM_REPLICAS") {
            let n = r.parse().map_err(|_| {
                Error::Config(format!(
                    "JETWIRE_STREAM_REPLICAS={r:?} is not a number: write 1, 3 or 5"
                ))
            })?;
            b = b.stream_replicas(n);
        }
        b.build()
    }

    /// Checks every field; `App::start` calls it too.
    pub fn validate(&self) -> Result<(), Error> {
        if self.url.trim().is_empty() {
            return Err(Error::Config(format!(
                "the NATS URL is empty: set NATS_URL, e.g. {DEFAULT_URL}"
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
        if !(1..=5).contains(&self.stream_replicas) {
            return Err(Error::Config(format!(
                "stream replicas (JETWIRE_STREAM_REPLICAS) is {}; NATS supports 1 to 5",
                self.stream_replicas
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(Error::Config(
                "NATS_TLS_CERT and NATS_TLS_KEY go together: set both, or neither".into(),
            ));
        }
        Ok(())
    }

    /// The config of a stream jetwire creates: file storage, the configured
    /// replicas, and a description that says who made it.
    pub(crate) fn stream_config(
        &self,
        name: String,
        subjects: String,
        retention: async_nats::jetstream::stream::RetentionPolicy,
    ) -> async_nats::jetstream::stream::Config {
        async_nats::jetstream::stream::Config {
            name,
            subjects: vec![subjects],
            retention,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: self.stream_replicas,
            description: Some("created by jetwire".to_owned()),
            ..Default::default()
        }
    }

    /// The prefix, if any and not empty.
    pub(crate) fn prefix(&self) -> Option<&str> {
        subject::set_prefix(self.subject_prefix.as_deref())
    }

    /// The URL list with any `user:password@` hidden.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Connects to NATS with these settings. The receiver changes each
    /// time the client connects again after losing its connection (a
    /// server restart, say): a pull request waiting at the server, or an
    /// ack on its way, is gone with the old connection. The first
    /// connection does not count: its event may come after this returns.
    pub(crate) async fn connect(
        &self,
    ) -> Result<(async_nats::Client, tokio::sync::watch::Receiver<()>), Error> {
        self.validate()?;
        let connect_err = |source: async_nats::Error| Error::Connect {
            url: self.redacted_url(),
            source,
        };
        let (connected, reconnects) = tokio::sync::watch::channel(());
        let lost = std::sync::atomic::AtomicBool::new(false);
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("jetwire:{}", self.app))
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                match event {
                    async_nats::Event::Disconnected => lost.store(true, Ordering::Relaxed),
                    async_nats::Event::Connected if lost.swap(false, Ordering::Relaxed) => {
                        connected.send_replace(());
                    }
                    _ => {}
                }
                std::future::ready(())
            });
        opts = match &self.auth {
            Auth::None => opts,
            Auth::Token(t) => opts.token(t.clone()),
            Auth::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.clone())
            }
            Auth::CredsFile(path) => opts
                .credentials_file(path)
                .await
                .map_err(|e| Error::Config(format!("NATS_CREDS {}: {e}", path.display())))?,
            Auth::NKey(seed) => opts.nkey(seed.clone()),
        };
        if let Some(ca) = &self.tls.ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert, &self.tls.key) {
            opts = opts
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let urls: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse()
                    .map_err(|e| Error::Config(format!("NATS_URL entry {:?}: {e}", redact_url(u))))
            })
            .collect::<Result<_, _>>()?;
        let client = opts
            .connect(urls)
            .await
            .map_err(|e| connect_err(Box::new(e)))?;
        Ok((client, reconnects))
    }
}

/// Hides the password of every `user:password@` in a URL list.
fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| {
            let (scheme, rest) = match u.find("://") {
                Some(i) => u.split_at(i + 3),
                None => ("", u),
            };
            match rest.rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{scheme}{user}:***{}", &rest[at..])
                }
                None => u.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
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
            .field("stream_replicas", &self.stream_replicas)
            .finish()
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Server URL, or a comma-separated list.
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
    /// Replicas of the streams jetwire creates.
    pub fn stream_replicas(mut self, replicas: usize) -> Self {
        self.config.stream_replicas = replicas;
        self
    }
    /// The config, validated.
    pub fn build(self) -> Result<Config, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = env(&[]).expect("defaults are valid");
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.stream_replicas, 1);
        assert!(c.subject_prefix.is_none());
    }

    #[test]
    fn reads_every_variable() {
        let c = env(&[
            ("NATS_URL", "nats://a:4222,nats://b:4222"),
            ("NATS_USER", "svc"),
            ("NATS_PASSWORD", "hunter2"),
            ("NATS_TLS_CA", "/ca.pem"),
            ("JETWIRE_APP", "billing"),
            ("JETWIRE_SUBJECT_PREFIX", "staging"),
            ("JETWIRE_SHUTDOWN_TIMEOUT", "5s"),
            ("JETWIRE_STREAM_REPLICAS", "3"),
        ])
        .expect("valid");
        assert_eq!(c.app, "billing");
        assert_eq!(c.subject_prefix.as_deref(), Some("staging"));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.stream_replicas, 3);
        assert!(matches!(c.auth, Auth::UserPassword { .. }));
        assert_eq!(c.tls.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
    }

    #[test]
    fn debug_hides_secrets() {
        for pairs in [
            &[("NATS_TOKEN", "s3cret-token")][..],
            &[("NATS_USER", "u"), ("NATS_PASSWORD", "s3cret-pw")][..],
            &[("NATS_NKEY", "SUAs3cret")][..],
            &[("NATS_URL", "nats://u:s3cret@host:4222,tls://v:s3cret2@h2")][..],
        ] {
            let shown = format!("{:?}", env(pairs).expect("valid"));
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert_eq!(
            redact_url("nats://u:p@h:1,nats://h2"),
            "nats://u:***@h:1,nats://h2"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("JETWIRE_SHUTDOWN_TIMEOUT", "soon")],
                "JETWIRE_SHUTDOWN_TIMEOUT",
            ),
            (
                &[("JETWIRE_STREAM_REPLICAS", "x")],
                "JETWIRE_STREAM_REPLICAS",
            ),
            (
                &[("JETWIRE_STREAM_REPLICAS", "7")],
                "JETWIRE_STREAM_REPLICAS",
            ),
            (
                &[("JETWIRE_SUBJECT_PREFIX", "a.*")],
                "JETWIRE_SUBJECT_PREFIX",
            ),
            (&[("JETWIRE_APP", "my app")], "JETWIRE_APP"),
            (&[("NATS_USER", "u")], "NATS_PASSWORD"),
            (
                &[("NATS_TOKEN", "t"), ("NATS_NKEY", "k")],
                "one kind of credentials",
            ),
            (&[("NATS_TLS_CERT", "/c.pem")], "NATS_TLS_KEY"),
        ];
        for (pairs, needle) in cases {
            let err = env(pairs).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
