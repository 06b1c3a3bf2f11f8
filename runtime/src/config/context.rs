//! `NATS_CONTEXT`: a `nats` CLI context, by name (a file
//! `$XDG_CONFIG_HOME/nats/context/<name>.json`, or under `~/.config` when
//! that variable is unset) or as a path to such a JSON file. Its url, auth,
//! TLS, JetStream domain and API prefix are read as if they were the
//! matching variables; a variable that is set wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// The fields of a context file jetwire reads. Every other field is
/// ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ContextFile {
    url: String,
    token: String,
    user: String,
    password: String,
    creds: String,
    nkey: String,
    cert: String,
    key: String,
    ca: String,
    jetstream_domain: String,
    jetstream_api_prefix: String,
}

/// Where the context named `value` lives.
fn path_of(value: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, Error> {
    if value.ends_with(".json") || value.contains('/') {
        return Ok(expand_home(value, get));
    }
    let base = match (get("XDG_CONFIG_HOME"), get("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(&home).join(".config"),
        (None, None) => {
            return Err(Error::Config(format!(
                "NATS_CONTEXT={value:?} names a context, but neither XDG_CONFIG_HOME nor HOME is set to find it: give the path of its JSON file instead"
            )));
        }
    };
    Ok(base
        .join("nats")
        .join("context")
        .join(format!("{value}.json")))
}

/// `~/x` as the CLI writes paths in contexts.
fn expand_home(path: &str, get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (path.strip_prefix("~/"), get("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The variables the context named by `NATS_CONTEXT` stands for, keyed
/// by the variable's name. Empty when `NATS_CONTEXT` is unset.
pub(crate) fn variables(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, Error> {
    let Some(value) = get("NATS_CONTEXT") else {
        return Ok(HashMap::new());
    };
    let path = path_of(&value, get)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Config(format!(
            "NATS_CONTEXT={value:?}: cannot read {}: {e}; list contexts with `nats context ls`, or give the path of a context file",
            path.display()
        ))
    })?;
    // Never show the file's text: it holds secrets.
    let file: ContextFile = serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "NATS_CONTEXT={value:?}: {} is not a nats context file (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let paths = |p: String| (!p.is_empty()).then(|| expand_home(&p, get).display().to_string());
    let mut vars = HashMap::new();
    let mut put = |name: &'static str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            vars.insert(name, v);
        }
    };
    put("NATS_URL", Some(file.url));
    put("NATS_TOKEN", Some(file.token));
    put("NATS_USER", Some(file.user));
    put("NATS_PASSWORD", Some(file.password));
    put("NATS_CREDS", paths(file.creds));
    put("NATS_NKEY", paths(file.nkey));
    put("NATS_TLS_CERT", paths(file.cert));
    put("NATS_TLS_KEY", paths(file.key));
    put("NATS_TLS_CA", paths(file.ca));
    put("NATS_JS_DOMAIN", Some(file.jetstream_domain));
    put("NATS_JS_API_PREFIX", Some(file.jetstream_api_prefix));
    Ok(vars)
}

/// The names of the credential variables: a context's credentials are
/// used only when none of these is set.
pub(crate) const AUTH_VARIABLES: &[&str] = &[
    "NATS_TOKEN",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_CREDS",
    "NATS_NKEY",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_context_by_name_is_read_from_the_config_home() {
        let dir = std::env::temp_dir().join(format!("jetwire-ctx-{}", std::process::id()));
        let ctx_dir = dir.join("nats").join("context");
        std::fs::create_dir_all(&ctx_dir).expect("dir");
        std::fs::write(
            ctx_dir.join("prod.json"),
            r#"{"description":"x","url":"nats://h:4222","user":"svc","password":"pw","ca":"~/ca.pem","nkey":""}"#,
        )
        .expect("write");
        let get = lookup(&[
            ("NATS_CONTEXT", "prod".into()),
            ("XDG_CONFIG_HOME", dir.display().to_string()),
            ("HOME", "/home/me".into()),
        ]);
        let vars = variables(&get).expect("read");
        assert_eq!(vars["NATS_URL"], "nats://h:4222");
        assert_eq!(vars["NATS_USER"], "svc");
        assert_eq!(vars["NATS_TLS_CA"], "/home/me/ca.pem");
        assert!(!vars.contains_key("NATS_NKEY"));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn a_missing_or_broken_context_names_the_variable_and_hides_the_file() {
        let get = lookup(&[("NATS_CONTEXT", "/nonexistent/ctx.json".into())]);
        let err = variables(&get).expect_err("missing").to_string();
        assert!(err.contains("NATS_CONTEXT"), "{err}");
        let file = std::env::temp_dir().join(format!("jetwire-bad-{}.json", std::process::id()));
        std::fs::write(&file, r#"{"password": "s3cret", oops}"#).expect("write");
        let get = lookup(&[("NATS_CONTEXT", file.display().to_string())]);
        let err = variables(&get).expect_err("broken").to_string();
        assert!(
            err.contains("not a nats context") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::remove_file(file).expect("clean up");
    }
}
