//! Every way to authenticate, and TLS, against real nats-server processes
//! configured for each; and the failures, each naming what to fix. The
//! server's own list of connections names each app's.

use std::time::Duration;

use jetwire::{App, Auth, Config, ConfigBuilder, HandlerError, Tls, subscribe};
use jetwire_tests::auth::{Operator, Pki, user_nkey};
use jetwire_tests::scrape::get;
use jetwire_tests::{Server, eventually, free_port, unique_prefix};

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

fn with_auth(server: &Server, auth: Auth) -> Config {
    config(server).auth(auth).build().expect("valid")
}

fn with_tls(server: &Server, pki: &Pki, ca: &str, client: bool) -> Config {
    config(server)
        .tls(tls(pki, ca, client))
        .build()
        .expect("valid")
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
    round_trip(with_auth(&server, Auth::Token("s3cret-token".into()))).await;
    // The same token in the URL is taken into the auth.
    let url = server.url().replace("nats://", "nats://s3cret-token@");
    let c = config(&server).url(url).build().expect("valid");
    assert!(!c.url.contains("s3cret"), "{}", c.url);
    round_trip(c).await;
    let err = start_error(with_auth(&server, Auth::Token("wrong".into()))).await;
    assert!(err.contains("NATS_TOKEN"), "{err}");
    assert!(!err.contains("wrong") || !err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn user_and_password_even_with_commas_at_signs_and_colons() {
    let password = "pa,ss@w:rd";
    let server = Server::start_with_config(&format!(
        "authorization {{ users = [ {{ user: svc, password: \"{password}\" }} ] }}\n"
    ));
    let user = |user: &str, password: &str| {
        with_auth(
            &server,
            Auth::UserPassword {
                user: user.into(),
                password: password.into(),
            },
        )
    };
    round_trip(user("svc", password)).await;
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
    for (name, pw) in [("svc", "wrong"), ("nobody", password)] {
        let err = start_error(user(name, pw)).await;
        assert!(
            err.contains("NATS_USER and NATS_PASSWORD") && err.contains(name),
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
    round_trip(with_auth(&server, Auth::NKey(seed.clone()))).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("svc.nk");
    std::fs::write(&file, format!("{seed}\n")).expect("write seed");
    round_trip(with_auth(&server, Auth::NKeyFile(file))).await;
    let (_, stranger) = user_nkey();
    let err = start_error(with_auth(&server, Auth::NKey(stranger))).await;
    assert!(err.contains("NATS_NKEY"), "{err}");
}

#[tokio::test]
async fn creds_file_against_a_server_in_operator_mode() {
    let operator = Operator::new();
    let server = Server::start_with_config(&operator.server_config);
    let dir = tempfile::tempdir().expect("dir");
    let creds = operator.write_creds(dir.path());
    round_trip(with_auth(&server, Auth::CredsFile(creds))).await;
    let missing = dir.path().join("nope.creds");
    let err = start_error(with_auth(&server, Auth::CredsFile(missing))).await;
    assert!(
        err.contains("NATS_CREDS") && err.contains("no such file"),
        "{err}"
    );
    // A user of another operator is refused.
    let stranger = Operator::new().write_creds(tempfile::tempdir().expect("dir").path());
    let err = start_error(with_auth(&server, Auth::CredsFile(stranger))).await;
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
    round_trip(with_tls(&server, &pki, "ca.pem", false)).await;
    let err = start_error(with_tls(&server, &pki, "other-ca.pem", false)).await;
    assert!(
        err.contains("not signed by a CA this app trusts") && err.contains("NATS_TLS_CA"),
        "{err}"
    );
    let expired = Server::start_with_config(&pki.server_tls("expired", false));
    let err = start_error(with_tls(&expired, &pki, "ca.pem", false)).await;
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn mutual_tls() {
    let pki = Pki::new();
    let server = Server::start_with_config(&pki.server_tls("server", true));
    round_trip(with_tls(&server, &pki, "ca.pem", true)).await;
    let err = start_error(with_tls(&server, &pki, "ca.pem", false)).await;
    assert!(
        err.contains("requires a client certificate") && err.contains("NATS_TLS_CERT"),
        "{err}"
    );
}

#[tokio::test]
async fn the_server_lists_an_apps_connection_under_its_name() {
    let monitor = free_port();
    let server = Server::start_with_config(&format!("http: \"127.0.0.1:{monitor}\""));
    let monitor = std::net::SocketAddr::from(([127, 0, 0, 1], monitor));
    let names = || async {
        let (status, body) = get(monitor, "/connz").await?;
        assert_eq!(status, 200, "{body}");
        let connz: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let names: Vec<String> = connz["connections"]
            .as_array()?
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        Some(names)
    };
    let running = App::new(config(&server).build().expect("valid"))
        .only(&["echo"])
        .start()
        .await
        .expect("starts");
    let listed = eventually(
        Duration::from_secs(10),
        "the app's connection listed",
        || async {
            names()
                .await
                .filter(|n| n.iter().any(|n| n == "jetwire:conn"))
        },
    )
    .await;
    assert_eq!(
        listed.iter().filter(|n| *n == "jetwire:conn").count(),
        1,
        "{listed:?}"
    );
    running.shutdown().await.expect("clean shutdown");
    eventually(Duration::from_secs(10), "the connection gone", || async {
        names()
            .await
            .filter(|n| !n.iter().any(|n| n == "jetwire:conn"))
    })
    .await;
}
