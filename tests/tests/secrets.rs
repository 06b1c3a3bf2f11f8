//! No secret in any output: connects that succeed and that fail, with
//! every log at TRACE, `Debug` and `Display` of the config, the clients
//! and every error, and panics, all captured from a real process
//! (`jetwire-secrets-probe`) and searched for each secret.

use std::process::Command;

use jetwire_tests::Server;
use jetwire_tests::auth::{Operator, Pki, user_nkey};

const PASSWORD: &str = "pw,S3cr@t:one";
const WRONG_PASSWORD: &str = "Wr0ng-S3cret-pw";
const TOKEN: &str = "t0ken-S3cret-42";
const WRONG_TOKEN: &str = "Wr0ng-t0ken-S3cret";

struct Probe {
    stdout: String,
    stderr: String,
    ok: bool,
}

fn probe(vars: &[(&str, String)]) -> Probe {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetwire-secrets-probe"));
    for k in [
        "NATS_URL",
        "NATS_TOKEN",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_CREDS",
        "NATS_NKEY",
        "NATS_TLS_CA",
        "NATS_TLS_CERT",
        "NATS_TLS_KEY",
        "NATS_CA",
        "NATS_CERT",
        "NATS_KEY",
        "NATS_CONTEXT",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("RUST_LOG", "trace")
        .env("RUST_BACKTRACE", "1")
        .env("JETWIRE_APP", "secrets-probe")
        .env(
            "JETWIRE_SUBJECT_PREFIX",
            jetwire_tests::unique_prefix("secrets"),
        );
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the probe");
    Probe {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    }
}

/// Runs each case, checks it connected or failed as it should, and
/// counts the secrets found in everything it printed.
/// A case: its name, its variables, and whether it should connect.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, bool);

fn check(cases: &[Case<'_>], secrets: &[&str]) {
    let mut leaks = Vec::new();
    for (name, vars, should_connect) in cases {
        let p = probe(vars);
        assert_eq!(
            p.ok && p.stdout.contains("CONNECTED"),
            *should_connect,
            "case {name}: expected connected = {should_connect}\nstdout:\n{}\nstderr (tail):\n{}",
            p.stdout,
            tail(&p.stderr)
        );
        // The probe really logged at TRACE, and showed its errors.
        assert!(p.stderr.contains("TRACE"), "case {name}: no trace logs");
        if !should_connect {
            assert!(p.stdout.contains("(Debug)"), "case {name}: no error shown");
            assert!(p.stderr.contains("panicked"), "case {name}: no panic");
        }
        for secret in secrets {
            for (stream, text) in [("stdout", &p.stdout), ("stderr", &p.stderr)] {
                let hits = text.matches(secret).count();
                if hits > 0 {
                    leaks.push(format!("case {name}: {hits} in {stream} of {secret:.12}…"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in output:\n{}", leaks.join("\n"));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The middle of a PEM key: what would show if any of it leaked.
fn pem_core(pem: &str) -> String {
    pem.lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .expect("a key line")
        .to_owned()
}

#[test]
fn passwords_nkeys_and_tls_keys_never_show() {
    let pki = Pki::new();
    let (nkey_public, seed) = user_nkey();
    let (_, stranger_seed) = user_nkey();
    let server = Server::start_with_config(&format!(
        "authorization {{ users = [ {{ user: svc, password: \"{PASSWORD}\" }}, {{ nkey: {nkey_public} }} ] }}\n{}",
        pki.server_tls("server", true)
    ));
    let host = server.url().replace("nats://", "");
    let dir = tempfile::tempdir().expect("dir");
    let seed_file = dir.path().join("svc.nk");
    std::fs::write(&seed_file, &seed).expect("seed file");
    let context = dir.path().join("ctx.json");
    std::fs::write(
        &context,
        serde_json::json!({
            "url": server.url(), "user": "svc", "password": PASSWORD,
            "ca": pki.path("ca.pem"), "cert": pki.path("client.pem"), "key": pki.path("client-key.pem"),
        })
        .to_string(),
    )
    .expect("context file");
    let p = |n: &str| pki.path(n).display().to_string();
    let tls = |mut v: Vec<(&'static str, String)>| {
        v.extend([
            ("NATS_CA", p("ca.pem")),
            ("NATS_CERT", p("client.pem")),
            ("NATS_KEY", p("client-key.pem")),
        ]);
        v
    };
    let cases = vec![
        (
            "password in the URL",
            tls(vec![("NATS_URL", format!("nats://svc:{PASSWORD}@{host}"))]),
            true,
        ),
        (
            "password in a URL list",
            tls(vec![(
                "NATS_URL",
                format!("nats://svc:{PASSWORD}@{host},nats://svc:{PASSWORD}@{host}"),
            )]),
            true,
        ),
        (
            "password with a comma in a URL without a scheme",
            tls(vec![("NATS_URL", format!("svc:{PASSWORD}@{host}"))]),
            true,
        ),
        (
            "user and password variables",
            tls(vec![
                ("NATS_URL", server.url()),
                ("NATS_USER", "svc".into()),
                ("NATS_PASSWORD", PASSWORD.into()),
            ]),
            true,
        ),
        (
            "wrong password",
            tls(vec![(
                "NATS_URL",
                format!("nats://svc:{WRONG_PASSWORD}@{host}"),
            )]),
            false,
        ),
        (
            "nkey seed",
            tls(vec![
                ("NATS_URL", server.url()),
                ("NATS_NKEY", seed.clone()),
            ]),
            true,
        ),
        (
            "nkey seed file",
            tls(vec![
                ("NATS_URL", server.url()),
                ("NATS_NKEY", seed_file.display().to_string()),
            ]),
            true,
        ),
        (
            "unknown nkey",
            tls(vec![
                ("NATS_URL", server.url()),
                ("NATS_NKEY", stranger_seed.clone()),
            ]),
            false,
        ),
        (
            "a nats CLI context",
            vec![("NATS_CONTEXT", context.display().to_string())],
            true,
        ),
        (
            "no client certificate",
            vec![("NATS_URL", server.url()), ("NATS_TLS_CA", p("ca.pem"))],
            false,
        ),
    ];
    check(
        &cases,
        &[
            "S3cr@t",
            WRONG_PASSWORD,
            &seed,
            &stranger_seed,
            &pem_core(&pki.client_key_pem),
            &pem_core(&pki.ca_key_pem),
        ],
    );
}

#[test]
fn tokens_never_show() {
    let server = Server::start_with_config(&format!("authorization {{ token: \"{TOKEN}\" }}\n"));
    let host = server.url().replace("nats://", "");
    let cases = vec![
        (
            "token in the URL",
            vec![("NATS_URL", format!("nats://{TOKEN}@{host}"))],
            true,
        ),
        (
            "token variable",
            vec![("NATS_URL", server.url()), ("NATS_TOKEN", TOKEN.into())],
            true,
        ),
        (
            "wrong token",
            vec![("NATS_URL", format!("nats://{WRONG_TOKEN}@{host}"))],
            false,
        ),
    ];
    check(&cases, &[TOKEN, WRONG_TOKEN]);
}

#[test]
fn creds_never_show() {
    let operator = Operator::new();
    let server = Server::start_with_config(&operator.server_config);
    let dir = tempfile::tempdir().expect("dir");
    let creds = operator.write_creds(dir.path());
    let stranger = Operator::new();
    let other_dir = tempfile::tempdir().expect("dir");
    let stranger_creds = stranger.write_creds(other_dir.path());
    let cases = vec![
        (
            "creds file",
            vec![
                ("NATS_URL", server.url()),
                ("NATS_CREDS", creds.display().to_string()),
            ],
            true,
        ),
        (
            "another operator's creds",
            vec![
                ("NATS_URL", server.url()),
                ("NATS_CREDS", stranger_creds.display().to_string()),
            ],
            false,
        ),
    ];
    check(
        &cases,
        &[
            &operator.user_seed,
            &operator.user_jwt,
            &operator.user_jwt[operator.user_jwt.len() - 40..],
            &stranger.user_seed,
            &stranger.user_jwt[stranger.user_jwt.len() - 40..],
        ],
    );
}

const DB_PASSWORD: &str = "DbS3cr3t,pw@x";

/// A database URL holding a password, for a database that takes it and
/// one that is not there: the pool, the relay, the dead-letter table,
/// sqlx's errors and the services' logs never show it.
#[test]
fn database_passwords_never_show() {
    let server = Server::start();
    let pg = jetwire_tests::postgres_url();
    let rest = pg
        .split_once('@')
        .map(|(_, r)| r.to_owned())
        .expect("user@host");
    let encoded = DB_PASSWORD.replace(',', "%2C").replace('@', "%40");
    let reachable = format!("postgres://postgres:{encoded}@{rest}");
    let closed = format!(
        "postgres://postgres:{encoded}@127.0.0.1:{}/postgres",
        jetwire_tests::free_port()
    );
    let mut leaks = Vec::new();
    for (name, url, reaches) in [("reachable", reachable, true), ("closed", closed, false)] {
        let p = probe(&[("NATS_URL", server.url()), ("PROBE_DATABASE_URL", url)]);
        assert!(
            p.ok && p.stdout.contains("CONNECTED"),
            "case {name}: {}",
            tail(&p.stderr)
        );
        assert!(
            p.stdout.contains("pool (Debug)"),
            "case {name}: the pool not shown"
        );
        assert_eq!(
            p.stdout.contains("database error"),
            !reaches,
            "case {name}: {}",
            p.stdout
        );
        for secret in [DB_PASSWORD, &encoded, "DbS3cr3t"] {
            for (stream, text) in [("stdout", &p.stdout), ("stderr", &p.stderr)] {
                let hits = text.matches(secret).count();
                if hits > 0 {
                    leaks.push(format!("case {name}: {hits} in {stream} of {secret:.8}…"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in output:\n{}", leaks.join("\n"));
}
