//! Connecting with a [`Config`]: credentials and TLS handed to async-nats,
//! URLs without secrets, and a failure explained in terms of the variable
//! to fix.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Auth, Config, url};
use crate::error::Error;

/// A fresh connection after a lost one, as a watch that changes each time.
pub(crate) type Reconnects = watch::Receiver<()>;

impl Config {
    /// Connects to NATS with these settings. The receiver changes each
    /// time the client connects again after losing its connection (a
    /// server restart, say): a pull request waiting at the server, or an
    /// ack on its way, is gone with the old connection. The first
    /// connection does not count: its event may come after this returns.
    pub(crate) async fn connect(&self) -> Result<(async_nats::Client, Reconnects), Error> {
        self.validate()?;
        // A URL put in after `build` may still hold credentials: take them
        // out here too, so async-nats never sees (nor logs) them.
        let (urls, url_auth) = url::take_credentials(&self.url)?;
        let auth = match (&self.auth, url_auth) {
            (Auth::None, Some(auth)) => auth,
            (auth, _) => auth.clone(),
        };
        let (connected, reconnects) = watch::channel(());
        let lost = AtomicBool::new(false);
        let opts = async_nats::ConnectOptions::new()
            .name(format!("jetwire:{}", self.app))
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                match event {
                    async_nats::Event::Disconnected => lost.store(true, Ordering::Relaxed),
                    async_nats::Event::Connected if lost.swap(false, Ordering::Relaxed) => {
                        connected.send_replace(());
                    }
                    async_nats::Event::ServerError(e) => {
                        tracing::warn!(error = %e, "the NATS server reported an error");
                    }
                    _ => {}
                }
                std::future::ready(())
            });
        let opts = with_auth(opts, &auth).await?;
        let opts = self.with_tls(opts);
        let addrs: Vec<async_nats::ServerAddr> = url::entries(&urls)
            .into_iter()
            .map(|u| {
                u.parse()
                    .map_err(|e| Error::Config(format!("NATS_URL entry {u:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = opts
            .connect(addrs)
            .await
            .map_err(|e| explain(e, &urls, &auth, self))?;
        Ok((client, reconnects))
    }

    fn with_tls(&self, mut opts: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        if let Some(ca) = &self.tls.ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert, &self.tls.key) {
            opts = opts
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        opts
    }
}

async fn with_auth(
    opts: async_nats::ConnectOptions,
    auth: &Auth,
) -> Result<async_nats::ConnectOptions, Error> {
    Ok(match auth {
        Auth::None => opts,
        Auth::Token(t) => opts.token(t.clone()),
        Auth::UserPassword { user, password } => {
            opts.user_and_password(user.clone(), password.clone())
        }
        Auth::CredsFile(path) => opts.credentials_file(path).await.map_err(|e| {
            Error::Config(format!(
                "NATS_CREDS {}: {}; set NATS_CREDS to the path of a .creds file (`nsc generate creds`)",
                path.display(),
                file_problem(path, &e)
            ))
        })?,
        Auth::NKey(seed) => opts.nkey(seed.clone()),
        Auth::NKeyFile(path) => opts.nkey(read_seed(path)?),
    })
}

/// Why a file could not be used, without ever showing its contents.
fn file_problem(path: &Path, e: &std::io::Error) -> String {
    if !path.exists() {
        return "no such file".to_owned();
    }
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "not readable by this process".to_owned(),
        _ if path.is_file() => "not a valid credentials file".to_owned(),
        _ => "cannot be read".to_owned(),
    }
}

/// The seed in an NKey seed file, as `nats` and `nk` write it.
fn read_seed(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "NATS_NKEY {}: {}; set NATS_NKEY to a seed file or a seed",
            path.display(),
            file_problem(path, &e)
        ))
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| crate::config::looks_like_seed(l))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Config(format!(
                "NATS_NKEY {}: the file holds no NKey seed (a line of 58 characters starting with `SU`)",
                path.display()
            ))
        })
}

/// A failed connect as an error that says which variable to fix.
fn explain(err: async_nats::ConnectError, urls: &str, auth: &Auth, config: &Config) -> Error {
    use async_nats::ConnectErrorKind as K;
    let mut chain = err.to_string();
    let mut next = std::error::Error::source(&err);
    while let Some(cause) = next {
        // async-nats often repeats its cause in its own message.
        let text = cause.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        next = cause.source();
    }
    let lower = chain.to_ascii_lowercase();
    let hint = if err.kind() == K::AuthorizationViolation {
        Some(match auth {
            Auth::None => "the server requires credentials: set NATS_TOKEN, NATS_USER and NATS_PASSWORD, NATS_CREDS or NATS_NKEY (or NATS_CONTEXT)".to_owned(),
            Auth::Token(_) => "the server refused the token: check NATS_TOKEN".to_owned(),
            Auth::UserPassword { user, .. } => format!(
                "the server refused user `{user}`: an unknown user or a wrong password; check NATS_USER and NATS_PASSWORD (or the credentials in NATS_URL)"
            ),
            Auth::CredsFile(p) => format!(
                "the server refused the user in {}: check NATS_CREDS, and that the account is known to the server",
                p.display()
            ),
            Auth::NKey(_) | Auth::NKeyFile(_) => {
                "the server refused the NKey: check NATS_NKEY".to_owned()
            }
        })
    } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        Some(format!(
            "the server's TLS certificate is not signed by a CA this app trusts: set NATS_TLS_CA (or NATS_CA) to the CA that signed it{}",
            trusted(config)
        ))
    } else if lower.contains("expired") || lower.contains("not valid after") {
        Some("the server's TLS certificate has expired: renew it on the server".to_owned())
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        Some("the server's TLS certificate does not name the host in NATS_URL: connect by a name the certificate lists".to_owned())
    } else if lower.contains("certificaterequired") || lower.contains("certificate required") {
        Some("the server requires a client certificate: set NATS_TLS_CERT and NATS_TLS_KEY (or NATS_CERT and NATS_KEY)".to_owned())
    } else if err.kind() == K::Tls {
        Some("check NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY (or NATS_CA, NATS_CERT, NATS_KEY), and that the server has TLS enabled".to_owned())
    } else {
        None
    };
    Error::Connect {
        url: url::redact(urls),
        reason: match hint {
            Some(hint) => format!("{chain}; {hint}"),
            None => format!(
                "{chain}; is nats-server running there, and are NATS_URL and the credentials right?"
            ),
        },
    }
}

fn trusted(config: &Config) -> String {
    match &config.tls.ca {
        Some(ca) => format!(" (trusted now: {})", ca.display()),
        None => " (trusted now: the system's roots only)".to_owned(),
    }
}

/// Reconnects of a client jetwire did not connect, seen by watching its
/// connection state: a change of the watch after each time the client is
/// connected again having lost its connection. Ends with the client.
pub(crate) fn watch_reconnects(client: &async_nats::Client) -> Reconnects {
    use async_nats::connection::State;
    const LOOK_EVERY: Duration = Duration::from_millis(100);
    let (tx, rx) = watch::channel(());
    let client = client.clone();
    tokio::spawn(async move {
        let mut lost = false;
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
            match client.connection_state() {
                State::Connected if lost => {
                    lost = false;
                    tx.send_replace(());
                }
                State::Connected => {}
                _ => lost = true,
            }
        }
    });
    rx
}
