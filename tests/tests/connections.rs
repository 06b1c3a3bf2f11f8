//! Every way to authenticate, and TLS, against real nats-server processes
//! configured for each; and the failures, each naming what to fix.

use std::time::Duration;

use jetwire::{App, Auth, Config, ConfigBuilder, HandlerError, Tls, subscribe};
use jetwire_tests::auth::{Operator, Pki, user_nkey};
use jetwire_tests::{Server, eventually, unique_prefix};

#[subscribe("conn.echo")]
async fn echo(_m: serde_json::Value) -> Result<(), HandlerError> {
    Ok(())
}

fn config(server: &Server) -> ConfigBuilder {
    Config::builder()
        .url(server.url())
        .app("conn")
        .subject_prefix(unique_prefix("conn"))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Starts the app, has it handle one message, and shuts it down: the
/// connection carries JetStream, pulls and acks.
async fn round_trip(config: Config) {
    let running = App::new(config)
        .only(&["echo"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("the app starts: {e}"));
    running
        .publisher()
        .publish("conn.echo", &serde_json::json!({"n": 1}))
        .await
        .expect("publish");
    eventually(Duration::from_secs(10), "the message handled", || async {
        (running.stats()[0].acked == 1).then_some(())
    })
    .await;
    running.shutdown().await.expect("a clean shutdown");
}

async fn start_error(config: Config) -> String {
    match App::new(config).only(&["echo"]).start().await {
        Ok(_) => panic!("the app started, but should not have"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn token() {
    let server = Server::start_with_config("authorization { token: \"s3cret-token\" }\n");
    round_trip(
        config(&server)
            .auth(Auth::Token("s3cret-token".into()))
            .build()
            .expect("valid"),
    )
    .await;
    // The same token in the URL is taken into the auth.
    let url = server.url().replace("nats://", "nats://s3cret-token@");
    let c = config(&server).url(url).build().expect("valid");
    assert!(!c.url.contains("s3cret"), "{}", c.url);
    round_trip(c).await;
    let err = start_error(
        config(&server)
            .auth(Auth::Token("wrong".into()))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(err.contains("NATS_TOKEN"), "{err}");
    assert!(!err.contains("wrong") || !err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn user_and_password_even_with_commas_at_signs_and_colons() {
    let password = "pa,ss@w:rd";
    let server = Server::start_with_config(&format!(
        "authorization {{ users = [ {{ user: svc, password: \"{password}\" }} ] }}\n"
    ));
    round_trip(
        config(&server)
            .auth(Auth::UserPassword {
                user: "svc".into(),
                password: password.into(),
            })
            .build()
            .expect("valid"),
    )
    .await;
    // Raw in a URL list, and percent-encoded.
    let host = server.url().replace("nats://", "");
    for url in [
        format!("nats://svc:{password}@{host},nats://svc:{password}@{host}"),
        format!("nats://svc:pa%2Css%40w%3Ard@{host}"),
    ] {
        let c = config(&server).url(url).build().expect("valid");
        assert_eq!(c.url.matches("127.0.0.1").count(), c.url.split(',').count());
        assert!(!c.url.contains("pa"), "{}", c.url);
        round_trip(c).await;
    }
    let wrong = |user: &str, password: &str| {
        config(&server)
            .auth(Auth::UserPassword {
                user: user.into(),
                password: password.into(),
            })
            .build()
            .expect("valid")
    };
    for (user, pw) in [("svc", "wrong"), ("nobody", password)] {
        let err = start_error(wrong(user, pw)).await;
        assert!(
            err.contains("NATS_USER and NATS_PASSWORD") && err.contains(user),
            "{err}"
        );
    }
}

#[tokio::test]
async fn nkey_as_a_seed_and_as_a_seed_file() {
    let (public, seed) = user_nkey();
    let server = Server::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: {public} }} ] }}\n"
    ));
    round_trip(
        config(&server)
            .auth(Auth::NKey(seed.clone()))
            .build()
            .expect("valid"),
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("svc.nk");
    std::fs::write(&file, format!("{seed}\n")).expect("write seed");
    round_trip(
        config(&server)
            .auth(Auth::NKeyFile(file))
            .build()
            .expect("valid"),
    )
    .await;
    let (_, stranger) = user_nkey();
    let err = start_error(
        config(&server)
            .auth(Auth::NKey(stranger))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(err.contains("NATS_NKEY"), "{err}");
}

#[tokio::test]
async fn creds_file_against_a_server_in_operator_mode() {
    let operator = Operator::new();
    let server = Server::start_with_config(&operator.server_config);
    let dir = tempfile::tempdir().expect("dir");
    let creds = operator.write_creds(dir.path());
    round_trip(
        config(&server)
            .auth(Auth::CredsFile(creds))
            .build()
            .expect("valid"),
    )
    .await;
    let missing = dir.path().join("nope.creds");
    let err = start_error(
        config(&server)
            .auth(Auth::CredsFile(missing))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(
        err.contains("NATS_CREDS") && err.contains("no such file"),
        "{err}"
    );
    // A user of another operator is refused.
    let stranger = Operator::new().write_creds(tempfile::tempdir().expect("dir").path());
    let err = start_error(
        config(&server)
            .auth(Auth::CredsFile(stranger))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(err.contains("NATS_CREDS"), "{err}");
}

fn tls(pki: &Pki, ca: &str, client: bool) -> Tls {
    Tls {
        ca: Some(pki.path(ca)),
        cert: client.then(|| pki.path("client.pem")),
        key: client.then(|| pki.path("client-key.pem")),
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_and_the_failures_that_say_which() {
    let pki = Pki::new();
    let server = Server::start_with_config(&pki.server_tls("server", false));
    round_trip(
        config(&server)
            .tls(tls(&pki, "ca.pem", false))
            .build()
            .expect("valid"),
    )
    .await;
    let err = start_error(
        config(&server)
            .tls(tls(&pki, "other-ca.pem", false))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(
        err.contains("not signed by a CA this app trusts") && err.contains("NATS_TLS_CA"),
        "{err}"
    );
    let expired = Server::start_with_config(&pki.server_tls("expired", false));
    let err = start_error(
        config(&expired)
            .tls(tls(&pki, "ca.pem", false))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn mutual_tls() {
    let pki = Pki::new();
    let server = Server::start_with_config(&pki.server_tls("server", true));
    round_trip(
        config(&server)
            .tls(tls(&pki, "ca.pem", true))
            .build()
            .expect("valid"),
    )
    .await;
    let err = start_error(
        config(&server)
            .tls(tls(&pki, "ca.pem", false))
            .build()
            .expect("valid"),
    )
    .await;
    assert!(err.contains("cannot connect"), "{err}");
}
