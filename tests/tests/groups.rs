//! Worker groups chosen at deploy time: a `{group}` token in a handler's
//! subject is filled from `JETWIRE_GROUPS`, once per group; a process
//! serves only its groups; a missing `JETWIRE_GROUPS` fails startup naming
//! it; `TestApp` fills groups the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, Config, Context, HandlerError, State, queue, subscribe};
use jetwire_tests::{eventually, shared_server, unique_prefix};

/// The subjects handlers saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

#[queue("queue.grprender.{group}")]
async fn grp_render(_job: u64, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    seen.0
        .0
        .lock()
        .expect("lock")
        .push(ctx.subject().to_owned());
    Ok(())
}

#[subscribe("grpframes.{group}.done")]
async fn grp_frame(_n: u64, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    seen.0
        .0
        .lock()
        .expect("lock")
        .push(ctx.subject().to_owned());
    Ok(())
}

fn config(prefix: &str, groups: &[&str]) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("grp")
        .subject_prefix(prefix)
        .groups(groups.iter().copied())
        .build()
        .expect("valid")
}

#[tokio::test]
async fn a_process_serves_the_groups_it_is_given() {
    let prefix = unique_prefix("grp");
    let seen = Seen::default();
    let gpu = App::new(config(&prefix, &["gpu", "fpga"]))
        .only(&["grp_render", "grp_frame"])
        .state(seen.clone())
        .start()
        .await
        .expect("starts");
    assert_eq!(gpu.stats().len(), 4, "each handler once per group");
    let publisher = gpu.publisher();
    for subject in [
        "queue.grprender.gpu",
        "queue.grprender.fpga",
        "queue.grprender.cpu",
        "grpframes.gpu.done",
        "grpframes.cpu.done",
    ] {
        publisher.publish(subject, &1u64).await.expect("publish");
    }
    eventually(
        Duration::from_secs(10),
        "the gpu and fpga messages",
        || async { (seen.0.lock().expect("lock").len() >= 3).then_some(()) },
    )
    .await;
    // A process serving cpu takes the cpu job, which waited in the queue.
    let cpu = App::new(config(&prefix, &["cpu"]))
        .only(&["grp_render"])
        .state(seen.clone())
        .start()
        .await
        .expect("starts");
    eventually(Duration::from_secs(10), "the cpu job", || async {
        (seen.0.lock().expect("lock").len() == 4).then_some(())
    })
    .await;
    let mut got = seen.0.lock().expect("lock").clone();
    got.sort();
    assert_eq!(
        got,
        [
            "grpframes.gpu.done",
            "queue.grprender.cpu",
            "queue.grprender.fpga",
            "queue.grprender.gpu"
        ]
    );
    cpu.shutdown().await.expect("shutdown");
    gpu.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn no_groups_fails_startup_naming_the_variable() {
    let err = App::new(config(&unique_prefix("grpx"), &[]))
        .only(&["grp_render"])
        .start()
        .await
        .expect_err("a {group} handler needs groups");
    let text = err.to_string();
    assert!(
        text.contains("JETWIRE_GROUPS") && text.contains("grp_render"),
        "{text}"
    );
}

#[tokio::test]
async fn testapp_fills_groups() {
    let seen = Seen::default();
    let app = TestApp::new()
        .only(&["grp_render"])
        .groups(&["gpu"])
        .state(seen.clone());
    assert!(app.publish("queue.grprender.gpu", &1u64).await.acked());
    assert!(!app.publish("queue.grprender.cpu", &1u64).await.handled());
    assert_eq!(
        seen.0.lock().expect("lock").clone(),
        ["queue.grprender.gpu"]
    );
}
