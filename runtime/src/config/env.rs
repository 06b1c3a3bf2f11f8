//! [`Config::from_env`]: jetwire's variables, the `nats` CLI's names for
//! the same things, and a CLI context (`NATS_CONTEXT`) under them all.

use std::collections::HashMap;

use jetwire_grammar::duration;

use crate::config::context::{self, AUTH_VARIABLES};
use crate::config::streams::{Provision, parse_bytes, parse_storage};
use crate::config::{AppOrigin, Auth, Config, Tls, TraceContext, looks_like_seed};
use crate::error::Error;

/// The environment as jetwire reads it: a variable that is set, else the
/// context's value for it. The context's credentials count only when no
/// credential variable is set, so the two never mix.
struct Vars<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
    context: HashMap<&'static str, String>,
    env_has_auth: bool,
}

impl Vars<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.get)(name).or_else(|| {
            if self.env_has_auth && AUTH_VARIABLES.contains(&name) {
                return None;
            }
            self.context.get(name).cloned()
        })
    }

    /// A TLS file under jetwire's name or the `nats` CLI's (`NATS_TLS_CA`
    /// or `NATS_CA`); both set to different files is an error.
    fn tls_file(&self, name: &str, cli_name: &str) -> Result<Option<String>, Error> {
        match ((self.get)(name), (self.get)(cli_name)) {
            (Some(a), Some(b)) if a != b => Err(Error::Config(format!(
                "{name} and {cli_name} name different files: they mean the same, set one"
            ))),
            (Some(a), _) | (None, Some(a)) => Ok(Some(a)),
            (None, None) => Ok(self.context.get(name).cloned()),
        }
    }

    fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, Error> {
        match self.var(name) {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .ok_or_else(|| Error::Config(format!("{name}={v:?}: {expected}"))),
        }
    }

    fn duration(&self, name: &str) -> Result<Option<std::time::Duration>, Error> {
        match self.var(name) {
            None => Ok(None),
            Some(v) => duration::parse(&v)
                .map(Some)
                .map_err(|e| Error::Config(format!("{name}: {e}"))),
        }
    }

    fn auth(&self) -> Result<Auth, Error> {
        let mut auths = Vec::new();
        if let Some(t) = self.var("NATS_TOKEN") {
            auths.push(("NATS_TOKEN", Auth::Token(t)));
        }
        match (self.var("NATS_USER"), self.var("NATS_PASSWORD")) {
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
        if let Some(p) = self.var("NATS_CREDS") {
            auths.push(("NATS_CREDS", Auth::CredsFile(p.into())));
        }
        if let Some(k) = self.var("NATS_NKEY") {
            // The `nats` CLI means a seed file; a seed itself works too.
            // Anything not plainly a path counts as a seed, so a mistyped
            // seed is never shown as if it were a file name.
            let k = k.trim();
            let path = k.contains(std::path::MAIN_SEPARATOR)
                || k.contains('/')
                || std::path::Path::new(k).is_file();
            let auth = if looks_like_seed(k) || !path {
                Auth::NKey(k.to_owned())
            } else {
                Auth::NKeyFile(k.into())
            };
            auths.push(("NATS_NKEY", auth));
        }
        match auths.len() {
            0 => Ok(Auth::None),
            1 => Ok(auths.remove(0).1),
            _ => {
                let names: Vec<&str> = auths.iter().map(|(n, _)| *n).collect();
                Err(Error::Config(format!(
                    "{} are all set: give one kind of credentials",
                    names.join(", ")
                )))
            }
        }
    }
}

impl Config {
    /// [`Config::from_env`] with the variables from `get` instead of the
    /// process environment: a command line's flags over the environment, a
    /// settings file, a test's map. `get` returns `None` for a variable
    /// that is not set.
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// let vars = HashMap::from([("NATS_URL", "nats://10.0.0.5:4222"), ("JETWIRE_APP", "billing")]);
    /// let config = jetwire::Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.url, "nats://10.0.0.5:4222");
    /// assert_eq!(config.app, "billing");
    /// ```
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let context = context::variables(&get)?;
        let env_has_auth = AUTH_VARIABLES.iter().any(|v| get(v).is_some());
        let vars = Vars {
            get: &get,
            context,
            env_has_auth,
        };
        let mut b = Config::builder();
        if let Some(url) = vars.var("NATS_URL") {
            b = b.url(url);
        }
        b = b.auth(vars.auth()?);
        b = b.tls(Tls {
            ca: vars.tls_file("NATS_TLS_CA", "NATS_CA")?.map(Into::into),
            cert: vars.tls_file("NATS_TLS_CERT", "NATS_CERT")?.map(Into::into),
            key: vars.tls_file("NATS_TLS_KEY", "NATS_KEY")?.map(Into::into),
        });
        if let Some(app) = vars.var("JETWIRE_APP") {
            b = b.app(app);
            b.config.app_origin = AppOrigin::Env;
        }
        if let Some(p) = vars.var("JETWIRE_SUBJECT_PREFIX") {
            b = b.subject_prefix(p);
        }
        if let Some(d) = vars.duration("JETWIRE_SHUTDOWN_TIMEOUT")? {
            b = b.shutdown_timeout(d);
        }
        if let Some(p) = vars.var("JETWIRE_PROVISION") {
            b = b.provision(Provision::parse(&p)?);
        }
        b.config.http_addr = vars.parsed(
            "JETWIRE_HTTP_ADDR",
            |v| v.trim().parse().ok(),
            "write an address and port, such as 0.0.0.0:9090 or 127.0.0.1:9090",
        )?;
        if let Some(d) = vars.duration("JETWIRE_METRICS_INTERVAL")? {
            b = b.metrics_interval(d);
        }
        if let Some(groups) = vars.var("JETWIRE_GROUPS") {
            b = b.groups(groups.split(',').map(str::trim).filter(|g| !g.is_empty()));
        }
        if let Some(t) = vars.var("JETWIRE_TRACE_CONTEXT") {
            b = b.trace_context(TraceContext::parse(&t)?);
        }
        if let Some(handlers) = vars.var("JETWIRE_HANDLERS") {
            b = b.handlers(handlers);
        }
        if let Some(d) = vars.duration("JETWIRE_WORKER_TTL")? {
            b = b.worker_ttl(d);
        }
        if let Some(domain) = vars.var("NATS_JS_DOMAIN") {
            b = b.jetstream_domain(domain.trim());
        }
        if let Some(prefix) = vars.var("NATS_JS_API_PREFIX") {
            b = b.jetstream_api_prefix(prefix.trim());
        }
        if let Some(path) = vars.var("JETWIRE_ASYNCAPI") {
            b = b.asyncapi(path);
        }
        let streams = &mut b.config.streams;
        streams.replicas = vars.parsed(
            "JETWIRE_STREAM_REPLICAS",
            |v| v.trim().parse().ok(),
            "not a number: write 1, 3 or 5",
        )?;
        streams.max_age = vars.duration("JETWIRE_STREAM_MAX_AGE")?;
        streams.duplicate_window = vars.duration("JETWIRE_STREAM_DUPLICATE_WINDOW")?;
        streams.max_bytes = vars.parsed(
            "JETWIRE_STREAM_MAX_BYTES",
            parse_bytes,
            "write a size such as 536870912, 512MB or 10GB",
        )?;
        streams.storage = vars.parsed(
            "JETWIRE_STREAM_STORAGE",
            parse_storage,
            "write `file` or `memory`",
        )?;
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_URL, Storage, StreamSettings};
    use std::collections::HashMap;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn groups_are_a_list_of_tokens() {
        let c = env(&[("JETWIRE_GROUPS", "gpu, cpu,")]).expect("valid");
        assert_eq!(c.groups, ["gpu", "cpu"]);
        let err = env(&[("JETWIRE_GROUPS", "gpu,a.b")]).expect_err("not a token");
        assert!(err.to_string().contains("JETWIRE_GROUPS"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = env(&[]).expect("defaults are valid");
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.streams.replicas, None);
        assert_eq!(c.replicas(), 1);
        assert_eq!(c.provision, Provision::Create);
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
        assert_eq!(c.streams.replicas, Some(3));
        assert!(matches!(c.auth, Auth::UserPassword { .. }));
        assert_eq!(c.tls.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
    }

    #[test]
    fn debug_hides_secrets() {
        for pairs in [
            &[("NATS_TOKEN", "s3cret-token")][..],
            &[("NATS_USER", "u"), ("NATS_PASSWORD", "s3cret-pw")][..],
            &[("NATS_NKEY", "SUAs3cret")][..],
            &[("NATS_URL", "nats://u:s3cret@host:4222,tls://u:s3cret@h2")][..],
        ] {
            let shown = format!("{:?}", env(pairs).expect("valid"));
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert_eq!(
            Config::builder()
                .url("nats://u:p@h:1,nats://h2")
                .build()
                .expect("valid")
                .url,
            "nats://h:1,nats://h2"
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
            (
                &[("NATS_CA", "/a.pem"), ("NATS_TLS_CA", "/b.pem")],
                "NATS_CA",
            ),
            (&[("JETWIRE_PROVISION", "maybe")], "JETWIRE_PROVISION"),
            (
                &[("JETWIRE_STREAM_MAX_BYTES", "lots")],
                "JETWIRE_STREAM_MAX_BYTES",
            ),
            (
                &[("JETWIRE_STREAM_STORAGE", "disk")],
                "JETWIRE_STREAM_STORAGE",
            ),
            (
                &[("JETWIRE_STREAM_MAX_AGE", "forever")],
                "JETWIRE_STREAM_MAX_AGE",
            ),
            (
                &[
                    ("JETWIRE_STREAM_MAX_AGE", "1m"),
                    ("JETWIRE_STREAM_DUPLICATE_WINDOW", "5m"),
                ],
                "duplicate window",
            ),
            (
                &[("NATS_URL", "nats://u:p@h"), ("NATS_TOKEN", "t")],
                "NATS_URL carries credentials",
            ),
        ];
        for (pairs, needle) in cases {
            let err = env(pairs).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_cli_names_and_a_seed_file_are_accepted() {
        let seed = format!("SU{}", "A".repeat(56));
        let c = env(&[
            ("NATS_CA", "/ca.pem"),
            ("NATS_CERT", "/c.pem"),
            ("NATS_KEY", "/k.pem"),
            ("NATS_NKEY", "/etc/nats/svc.nk"),
        ])
        .expect("valid");
        assert_eq!(c.tls.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(c.tls.key.as_deref(), Some(std::path::Path::new("/k.pem")));
        assert!(matches!(c.auth, Auth::NKeyFile(ref p) if p.ends_with("svc.nk")));
        let c = env(&[("NATS_NKEY", &seed)]).expect("valid");
        assert!(matches!(c.auth, Auth::NKey(ref s) if *s == seed));
    }

    #[test]
    fn credentials_in_the_url_move_into_the_auth() {
        let c = env(&[(
            "NATS_URL",
            "nats://svc:p%40ss@h1:4222,nats://svc:p%40ss@h2:4222",
        )])
        .expect("valid");
        assert_eq!(c.url, "nats://h1:4222,nats://h2:4222");
        assert!(
            matches!(c.auth, Auth::UserPassword { ref user, ref password } if user == "svc" && password == "p@ss")
        );
        let c = env(&[("NATS_URL", "nats://t0ken@h1:4222")]).expect("valid");
        assert!(matches!(c.auth, Auth::Token(ref t) if t == "t0ken"));
    }

    #[test]
    fn stream_settings_and_provisioning_come_from_the_environment() {
        let c = env(&[
            ("JETWIRE_PROVISION", "bind"),
            ("JETWIRE_STREAM_MAX_AGE", "7d"),
            ("JETWIRE_STREAM_MAX_BYTES", "512MB"),
            ("JETWIRE_STREAM_DUPLICATE_WINDOW", "10m"),
            ("JETWIRE_STREAM_STORAGE", "memory"),
            ("JETWIRE_STREAM_REPLICAS", "3"),
        ])
        .expect("valid");
        assert_eq!(c.provision, Provision::Bind);
        assert_eq!(
            c.streams,
            StreamSettings {
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
                max_bytes: Some(512 << 20),
                duplicate_window: Some(Duration::from_secs(600)),
                storage: Some(Storage::Memory),
                replicas: Some(3),
            }
        );
    }

    #[test]
    fn a_context_fills_in_what_the_environment_leaves_out() {
        let file =
            std::env::temp_dir().join(format!("jetwire-env-ctx-{}.json", std::process::id()));
        std::fs::write(
            &file,
            r#"{"url":"nats://ctx:4222","token":"ctx-token","ca":"/ctx-ca.pem"}"#,
        )
        .expect("write");
        let path = file.display().to_string();
        let c = env(&[("NATS_CONTEXT", &path)]).expect("valid");
        assert_eq!(c.url, "nats://ctx:4222");
        assert!(matches!(c.auth, Auth::Token(ref t) if t == "ctx-token"));
        assert_eq!(
            c.tls.ca.as_deref(),
            Some(std::path::Path::new("/ctx-ca.pem"))
        );
        // Explicit variables win, and credentials never mix.
        let c = env(&[
            ("NATS_CONTEXT", &path),
            ("NATS_URL", "nats://mine:4222"),
            ("NATS_USER", "me"),
            ("NATS_PASSWORD", "pw"),
            ("NATS_CA", "/my-ca.pem"),
        ])
        .expect("valid");
        assert_eq!(c.url, "nats://mine:4222");
        assert!(matches!(c.auth, Auth::UserPassword { ref user, .. } if user == "me"));
        assert_eq!(
            c.tls.ca.as_deref(),
            Some(std::path::Path::new("/my-ca.pem"))
        );
        std::fs::remove_file(file).expect("clean up");
    }

    #[test]
    fn a_jetstream_domain_comes_from_the_environment_or_a_context() {
        let c = env(&[("NATS_JS_DOMAIN", "leaf")]).expect("valid");
        assert_eq!(c.jetstream_api(), "$JS.leaf.API");
        let c = env(&[("NATS_JS_API_PREFIX", "JS.hub.API")]).expect("valid");
        assert_eq!(c.jetstream_api(), "JS.hub.API");
        let file =
            std::env::temp_dir().join(format!("jetwire-env-domain-{}.json", std::process::id()));
        std::fs::write(
            &file,
            r#"{"url":"nats://ctx:4222","jetstream_domain":"edge"}"#,
        )
        .expect("write");
        let path = file.display().to_string();
        let c = env(&[("NATS_CONTEXT", &path)]).expect("valid");
        assert_eq!(c.jetstream_domain.as_deref(), Some("edge"));
        let c = env(&[("NATS_CONTEXT", &path), ("NATS_JS_DOMAIN", "leaf")]).expect("valid");
        assert_eq!(
            c.jetstream_domain.as_deref(),
            Some("leaf"),
            "the variable wins"
        );
        std::fs::remove_file(file).expect("clean up");
        let err = env(&[("NATS_JS_DOMAIN", "a.b")]).expect_err("not a token");
        assert!(err.to_string().contains("NATS_JS_DOMAIN"), "{err}");
    }

    #[test]
    fn where_the_app_name_came_from_is_known() {
        assert_eq!(env(&[]).expect("valid").app_origin(), AppOrigin::Binary);
        let c = env(&[("JETWIRE_APP", "billing")]).expect("valid");
        assert_eq!(c.app_origin(), AppOrigin::Env);
        let c = Config::builder().app("billing").build().expect("valid");
        assert_eq!(c.app_origin(), AppOrigin::Code);
        let mut c = env(&[]).expect("valid");
        c.app = "billing".into();
        assert_eq!(c.app_origin(), AppOrigin::Code);
    }
}
