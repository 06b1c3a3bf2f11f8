//! Startup fails before consuming anything, with a message that names what
//! is wrong and how to fix it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use jetwire::{App, Config, Error, State, queue, subscribe};
use jetwire_tests::{config, free_port, shared_server, unique_prefix};

#[derive(Clone)]
struct Db;

#[subscribe("su.needs-state")]
async fn needs_state(_n: u64, _db: State<Db>) {}

#[queue("queue.su-twice")]
async fn twice_a(_n: u64) {}

mod other {
    #[jetwire::queue("queue.su-twice")]
    async fn twice_b(_n: u64) {}
}

#[queue("queue.su-over.*")]
async fn over_wild(_n: u64) {}

#[queue("queue.su-over.a")]
async fn over_exact(_n: u64) {}

#[subscribe("su.one", durable = "same-name")]
async fn same_durable_a(_n: u64) {}

#[subscribe("su.two", durable = "same-name")]
async fn same_durable_b(_n: u64) {}

#[subscribe("evx.created")]
async fn on_evx(_n: u64) {}

#[subscribe("su.bound", stream = "NO_SUCH_STREAM")]
async fn bound_to_missing(_n: u64) {}

#[subscribe("su.plain", ack_wait = "7s", max_deliver = 4)]
async fn plain(_n: u64) {}

async fn start_err(app: App) -> String {
    let err: Error = app.start().await.expect_err("startup must fail");
    err.to_string()
}

fn assert_has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "{n:?} missing from: {msg}");
    }
}

#[tokio::test]
async fn unreachable_server() {
    let config = Config::builder()
        .url(format!("nats://127.0.0.1:{}", free_port()))
        .app("svc")
        .build()
        .expect("valid");
    let t0 = std::time::Instant::now();
    let msg = start_err(App::new(config).only(&["plain"])).await;
    assert_has(&msg, &["cannot connect to NATS", "is nats-server running"]);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "fails fast instead of retrying forever"
    );
}

#[tokio::test]
async fn missing_state() {
    let cfg = config(shared_server(), &unique_prefix("state"), "svc");
    let msg = start_err(App::new(cfg).only(&["needs_state"])).await;
    assert_has(&msg, &["needs_state", "State<startup::Db>", ".state("]);
}

#[tokio::test]
async fn two_queue_handlers_on_one_subject() {
    let cfg = config(shared_server(), &unique_prefix("twice"), "svc");
    let msg = start_err(App::new(cfg).only(&["twice_a", "twice_b"])).await;
    assert_has(
        &msg,
        &[
            "two #[queue] handlers on `queue.su-twice`",
            "twice_a",
            "other::twice_b",
        ],
    );
}

#[tokio::test]
async fn overlapping_work_queue_subjects() {
    let cfg = config(shared_server(), &unique_prefix("over"), "svc");
    let msg = start_err(App::new(cfg).only(&["over_wild", "over_exact"])).await;
    assert_has(&msg, &["`queue.su-over.*`", "`queue.su-over.a`", "overlap"]);
}

#[tokio::test]
async fn two_handlers_one_durable() {
    let cfg = config(shared_server(), &unique_prefix("dur"), "svc");
    let msg = start_err(App::new(cfg).only(&["same_durable_a", "same_durable_b"])).await;
    assert_has(
        &msg,
        &[
            "same_durable_a",
            "same_durable_b",
            "same-name",
            "durable = ",
        ],
    );
}

#[tokio::test]
async fn all_problems_are_listed_together() {
    let cfg = config(shared_server(), &unique_prefix("all"), "svc");
    let msg =
        start_err(App::new(cfg).only(&["needs_state", "same_durable_a", "same_durable_b"])).await;
    assert_has(&msg, &["2 problems", "needs_state", "same-name"]);
}

#[tokio::test]
async fn stream_with_the_wrong_retention() {
    let prefix = unique_prefix("wq");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: format!("{}_THEIRS", prefix.to_uppercase()),
        subjects: vec![format!("{prefix}.evx.>")],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("stream created");
    let msg = start_err(App::new(config(shared_server(), &prefix, "svc")).only(&["on_evx"])).await;
    assert_has(
        &msg,
        &["_THEIRS", "retention=workqueue", "on_evx", "stream = "],
    );
}

#[tokio::test]
async fn bound_stream_that_does_not_exist() {
    let cfg = config(shared_server(), &unique_prefix("bound"), "svc");
    let msg = start_err(App::new(cfg).only(&["bound_to_missing"])).await;
    assert_has(
        &msg,
        &[
            "NO_SUCH_STREAM",
            "bound_to_missing",
            "create the stream or remove the option",
        ],
    );
}

#[tokio::test]
async fn durable_owned_by_another_subject() {
    let prefix = unique_prefix("owned");
    let cfg = config(shared_server(), &prefix, "svc");
    // Let jetwire create the stream, then replace the durable with a foreign one.
    App::new(cfg.clone())
        .only(&["plain"])
        .start()
        .await
        .expect("first start")
        .shutdown()
        .await
        .expect("stop");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let stream = js
        .get_stream(jetwire::topology::default_stream(Some(&prefix), "su.plain"))
        .await
        .expect("stream");
    let durable = format!("{prefix}_svc-plain");
    stream.delete_consumer(&durable).await.expect("deleted");
    stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: format!("{prefix}.su.elsewhere"),
            ..Default::default()
        })
        .await
        .expect("foreign consumer");
    let msg = start_err(App::new(cfg).only(&["plain"])).await;
    assert_has(&msg, &[&durable, "su.elsewhere", "durable = "]);
}

#[tokio::test]
async fn changed_options_update_the_durable() {
    let prefix = unique_prefix("upd");
    let cfg = config(shared_server(), &prefix, "svc");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let stream_name = jetwire::topology::default_stream(Some(&prefix), "su.plain");
    js.create_stream(stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{prefix}.su.>")],
        ..Default::default()
    })
    .await
    .expect("stream");
    let durable = format!("{prefix}_svc-plain");
    let stream = js.get_stream(&stream_name).await.expect("stream");
    stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: format!("{prefix}.su.plain"),
            ack_wait: Duration::from_secs(99),
            max_deliver: 9,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
            ..Default::default()
        })
        .await
        .expect("old consumer");
    let app = App::new(cfg)
        .only(&["plain"])
        .start()
        .await
        .expect("starts, updating the durable");
    let info = stream.consumer_info(&durable).await.expect("info").config;
    assert_eq!(info.ack_wait, Duration::from_secs(7));
    // The handler's 4, and room for 20 hand-backs, which do not count as runs.
    assert_eq!(info.max_deliver, 4 + 20);
    assert!(
        info.backoff.is_empty(),
        "jetwire never keeps a consumer BackOff"
    );
    app.shutdown().await.expect("stop");
}

#[tokio::test]
async fn invalid_config_is_refused_before_connecting() {
    let mut cfg = config(shared_server(), &unique_prefix("cfg"), "svc");
    cfg.subject_prefix = Some("bad prefix".into());
    let msg = start_err(App::new(cfg).only(&["plain"])).await;
    assert_has(&msg, &["JETWIRE_SUBJECT_PREFIX", "a space"]);
}

#[subscribe("su.longname", partitions = 16)]
async fn a_handler_with_a_rather_long_name_for_its_durable(_n: u64) {}

/// A durable longer than a name the advisory reader takes back (a long
/// app name, a group, a partition) would leave messages the server gives
/// up on without a dead letter: startup refuses it, naming the handler.
#[tokio::test]
async fn a_derived_durable_over_the_name_limit_fails_startup() {
    let cfg = config(
        shared_server(),
        &unique_prefix("long"),
        "an-app-named-at-length",
    );
    let msg =
        start_err(App::new(cfg).only(&["a_handler_with_a_rather_long_name_for_its_durable"])).await;
    assert_has(
        &msg,
        &[
            "a_handler_with_a_rather_long_name_for_its_durable",
            "limit is 64",
            "shorten",
        ],
    );
}
