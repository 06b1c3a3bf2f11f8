//! The worker directory against a real server: two instances listed with
//! everything they registered, one removed at once by its shutdown, and a
//! process killed with SIGKILL gone within the TTL.

use std::time::{Duration, Instant};

use jetwire::{App, Config, HandlerError, queue, subscribe};
use jetwire_tests::{WorkerProcess, eventually, shared_server, unique_prefix};

#[queue("queue.dirjob", concurrency = 7)]
async fn dir_job(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe("direv.created")]
async fn dir_event(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

fn config(prefix: &str, app: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app(app)
        .subject_prefix(prefix)
        .build()
        .expect("valid")
}

#[tokio::test]
async fn instances_register_and_shutdown_removes_them_at_once() {
    let prefix = unique_prefix("dir");
    let first = App::new(config(&prefix, "billing"))
        .only(&["dir_job"])
        .version("1.2.3")
        .label("region", "eu-west-1")
        .label("build", "a")
        .label("build", "b")
        .start()
        .await
        .expect("starts");
    let second = App::new(config(&prefix, "shipping"))
        .only(&["dir_event"])
        .start()
        .await
        .expect("starts");
    let workers = jetwire::directory::list(&config(&prefix, "cli"))
        .await
        .expect("lists");
    assert_eq!(workers.len(), 2, "{workers:#?}");
    let billing = workers
        .iter()
        .find(|w| w.app == "billing")
        .expect("billing");
    assert_eq!(billing.pid, std::process::id());
    assert_eq!(billing.app_version.as_deref(), Some("1.2.3"));
    assert_eq!(billing.jetwire_version, env!("CARGO_PKG_VERSION"));
    assert!(!billing.host.is_empty() && !billing.started_at.is_empty());
    let h = &billing.handlers[0];
    assert_eq!(
        (
            h.name.as_str(),
            h.subject.as_str(),
            h.kind.as_str(),
            h.concurrency
        ),
        ("dir_job", "queue.dirjob", "queue", 7)
    );
    let shipping = workers
        .iter()
        .find(|w| w.app == "shipping")
        .expect("shipping");
    assert_eq!(shipping.handlers[0].kind, "subscribe");
    let labels: Vec<(&str, &str)> = billing
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels, [("build", "b"), ("region", "eu-west-1")]);
    assert!(shipping.labels.is_empty());
    assert_ne!(billing.instance, shipping.instance);

    first.shutdown().await.expect("shutdown");
    let left = jetwire::directory::list(&config(&prefix, "cli"))
        .await
        .expect("lists");
    assert_eq!(
        left.len(),
        1,
        "removed at shutdown, not aged out: {left:#?}"
    );
    assert_eq!(left[0].app, "shipping");
    second.shutdown().await.expect("shutdown");
}

#[tokio::test]
#[allow(clippy::print_stdout)]
async fn a_killed_instance_is_gone_within_the_ttl() {
    const TTL: Duration = Duration::from_secs(2);
    let prefix = unique_prefix("dirk");
    let worker = WorkerProcess::ready(
        env!("CARGO_BIN_EXE_jetwire-test-worker"),
        &shared_server().url(),
        &prefix,
        "ok",
        &[("JETWIRE_WORKER_TTL", "2s")],
    );
    let pid = worker.pid();
    let mut cfg = config(&prefix, "cli");
    cfg.worker_ttl = TTL;
    let listed = jetwire::directory::list(&cfg).await.expect("lists");
    assert!(listed.iter().any(|w| w.pid == pid), "{listed:#?}");
    worker.kill9();
    let killed = Instant::now();
    // Its last refresh came before the kill: once the TTL has passed, a
    // listing with that TTL leaves the record out, whenever the server
    // gets to expiring it.
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let listed = jetwire::directory::list(&cfg).await.expect("lists");
    assert!(
        !listed.iter().any(|w| w.pid == pid),
        "listed {:?} after the kill: {listed:#?}",
        killed.elapsed()
    );
    // And the bucket's max age (the TTL) removes it on the server too: a
    // listing that trusts records for 30 s stops seeing it.
    let trusting = config(&prefix, "cli");
    eventually(Duration::from_secs(30), "the record expired", || async {
        let listed = jetwire::directory::list(&trusting).await.expect("lists");
        (!listed.iter().any(|w| w.pid == pid)).then_some(())
    })
    .await;
    println!(
        "directory: a killed instance's record left the bucket {:?} after SIGKILL (TTL {TTL:?})",
        killed.elapsed()
    );
}

#[tokio::test]
async fn a_label_without_a_key_fails_start() {
    let err = App::new(config(&unique_prefix("dir"), "billing"))
        .only(&["dir_job"])
        .label(" ", "x")
        .start()
        .await
        .expect_err("an empty key");
    assert!(err.to_string().contains("App::label"), "{err}");
}
