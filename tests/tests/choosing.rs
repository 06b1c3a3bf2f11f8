//! Choosing which of a binary's handlers run: `App::only` by name,
//! `App::only_kind` by kind, and `JETWIRE_HANDLERS` (`queues`, `events`,
//! names). A name no handler answers to fails `start()` naming it and the
//! handlers there are; in `TestApp`, `check()` (and every publish).

use std::collections::BTreeSet;

use jetwire::registry::Kind;
use jetwire::testing::TestApp;
use jetwire::{App, Config, Error, HandlerError, queue, subscribe};
use jetwire_tests::{shared_server, unique_prefix};

#[subscribe("choose.event")]
async fn choose_event(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.choose.a")]
async fn choose_job_a(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.choose.b")]
async fn choose_job_b(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

const OURS: [&str; 3] = ["choose_event", "choose_job_a", "choose_job_b"];

/// The config of an app under `prefix`, with `JETWIRE_HANDLERS` as given,
/// read as the environment is.
fn config(prefix: &str, handlers: Option<&str>) -> Result<Config, Error> {
    let url = shared_server().url();
    Config::from_lookup(|name| match name {
        "NATS_URL" => Some(url.clone()),
        "JETWIRE_APP" => Some("choose".to_owned()),
        "JETWIRE_SUBJECT_PREFIX" => Some(prefix.to_owned()),
        "JETWIRE_HANDLERS" => handlers.map(str::to_owned),
        _ => None,
    })
}

/// The handlers a started app consumes for.
async fn running(app: App) -> BTreeSet<&'static str> {
    let running = app.start().await.expect("starts");
    let names = running.stats().iter().map(|s| s.handler).collect();
    running.shutdown().await.expect("clean shutdown");
    names
}

#[tokio::test]
async fn a_name_no_handler_answers_to_fails_start_naming_those_there_are() {
    let prefix = unique_prefix("choose");
    let config = config(&prefix, None).expect("valid");
    let err = App::new(config)
        .only(&["choose_job_a", "choose_jbo_b"])
        .start()
        .await
        .expect_err("a misspelt name");
    let text = err.to_string();
    assert!(text.contains("App::only"), "{text}");
    assert!(text.contains("`choose_jbo_b`"), "{text}");
    assert!(text.contains("choosing::choose_job_b"), "{text}");
}

#[tokio::test]
async fn jetwire_handlers_chooses_by_kind_or_by_name() {
    let prefix = unique_prefix("choose");
    let only_ours = |handlers| App::new(config(&prefix, handlers).expect("valid")).only(&OURS);
    let queues = running(only_ours(Some("queues"))).await;
    assert_eq!(queues, BTreeSet::from(["choose_job_a", "choose_job_b"]));
    let events = running(only_ours(Some("events"))).await;
    assert_eq!(events, BTreeSet::from(["choose_event"]));
    let named = running(only_ours(Some("choose_job_b, choosing::choose_event"))).await;
    assert_eq!(named, BTreeSet::from(["choose_event", "choose_job_b"]));
    let all = running(only_ours(None)).await;
    assert_eq!(all, BTreeSet::from(OURS));
    let by_kind = running(only_ours(None).only_kind(Kind::Subscribe)).await;
    assert_eq!(by_kind, BTreeSet::from(["choose_event"]));

    let err = only_ours(Some("choose_job_c"))
        .start()
        .await
        .expect_err("no such handler");
    let text = err.to_string();
    assert!(text.contains("JETWIRE_HANDLERS=choose_job_c"), "{text}");
    assert!(text.contains("choosing::choose_job_a"), "{text}");
    let err = config(&prefix, Some(",")).expect_err("names nothing");
    assert!(err.to_string().contains("JETWIRE_HANDLERS"), "{err}");
}

#[tokio::test]
async fn choosing_in_test_app() {
    let err = TestApp::new()
        .only(&["choose_job_z"])
        .check()
        .expect_err("no such handler");
    assert!(err.to_string().contains("`choose_job_z`"), "{err}");

    let app = TestApp::new().only(&OURS).only_kind(Kind::Subscribe);
    let report = app.publish("queue.choose.a", &1u64).await;
    assert!(report.runs().is_empty(), "a queue handler was left out");
    let report = app.publish("choose.event", &1u64).await;
    assert_eq!(report.runs().len(), 1);
}
