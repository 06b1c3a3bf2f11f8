//! Handler control, live and in `TestApp`: `HandlerError::discard` drops a
//! message without a letter and it never comes back; `ctx.shutdown()`
//! resolves when the app drains and what the handler returns then is
//! acked; `ctx.correlation_id()` names the conversation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jetwire::testing::TestApp;
use jetwire::{App, Config, Context, HandlerError, PublishOptions, State, queue};
use jetwire_tests::{dlq_stream, eventually, shared_server, unique_prefix};

#[queue("queue.ctlstale", ack_wait = "1s")]
async fn ctl_stale(version: u64) -> Result<(), HandlerError> {
    if version < 10 {
        return Err(HandlerError::discard(format!("version {version} is stale")));
    }
    Ok(())
}

#[queue("queue.ctllong")]
async fn ctl_long(_n: u64, ctx: Context) -> Result<(), HandlerError> {
    ctx.shutdown().await;
    Ok(())
}

/// The correlation ids handlers saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

#[queue("queue.ctlcorr")]
async fn ctl_corr(_n: u64, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    seen.0
        .0
        .lock()
        .expect("lock")
        .push(ctx.correlation_id().to_owned());
    Ok(())
}

fn config(prefix: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("ctl")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(20))
        .build()
        .expect("valid")
}

async fn consumer_info(prefix: &str, durable_part: &str) -> async_nats::jetstream::consumer::Info {
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connects");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(jetwire::topology::queue_stream(Some(prefix)))
        .await
        .expect("the queue stream");
    let mut names = stream.consumer_names();
    let mut durable = None;
    while let Some(Ok(name)) = futures_util::StreamExt::next(&mut names).await {
        if name.to_uppercase().contains(durable_part) {
            durable = Some(name);
        }
    }
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(&durable.expect("the handler's durable"))
        .await
        .expect("durable");
    consumer.info().await.expect("info").clone()
}

#[tokio::test]
async fn a_discarded_message_leaves_no_letter_and_never_comes_back() {
    let prefix = unique_prefix("ctld");
    let running = App::new(config(&prefix))
        .only(&["ctl_stale"])
        .start()
        .await
        .expect("starts");
    let publisher = running.publisher();
    publisher
        .publish("queue.ctlstale", &3u64)
        .await
        .expect("publish");
    publisher
        .publish("queue.ctlstale", &12u64)
        .await
        .expect("publish");
    eventually(
        Duration::from_secs(10),
        "one discarded, one acked",
        || async {
            let s = &running.stats()[0];
            (s.discarded == 1 && s.acked == 1).then_some(())
        },
    )
    .await;
    // Terminated: nothing pending or awaiting an ack at the server, past
    // its ack_wait of 1 s.
    eventually(Duration::from_secs(10), "the durable settled", || async {
        let info = consumer_info(&prefix, "CTLSTALE").await;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    let s = &running.stats()[0];
    assert_eq!((s.received, s.dead_lettered, s.retried), (2, 0, 0));
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connects");
    let letters = jetwire_tests::stream_messages(&client, &dlq_stream(&prefix)).await;
    assert!(letters.is_empty(), "no dead letter for a discard");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_handler_waiting_on_shutdown_returns_and_is_acked() {
    let prefix = unique_prefix("ctls");
    let running = App::new(config(&prefix))
        .only(&["ctl_long"])
        .start()
        .await
        .expect("starts");
    running
        .publisher()
        .publish("queue.ctllong", &1u64)
        .await
        .expect("publish");
    eventually(Duration::from_secs(10), "the call running", || async {
        (running.stats()[0].received == 1).then_some(())
    })
    .await;
    let began = Instant::now();
    running.shutdown().await.expect("clean shutdown");
    // Well inside the 20 s shutdown timeout: the handler returned at drain.
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let info = consumer_info(&prefix, "CTLLONG").await;
    assert_eq!(info.ack_floor.stream_sequence, 1, "acked");
    assert_eq!(info.num_ack_pending, 0);
}

#[tokio::test]
async fn the_correlation_id_is_the_conversations() {
    let seen = Seen::default();
    let app = TestApp::new().only(&["ctl_corr"]).state(seen.clone());
    app.publish_with(
        "queue.ctlcorr",
        &1u64,
        PublishOptions::new().correlation_id("order-42"),
    )
    .await;
    let own = app
        .publish_with(
            "queue.ctlcorr",
            &2u64,
            PublishOptions::new().message_id("m-2"),
        )
        .await;
    assert!(own.acked());
    let seen = seen.0.lock().expect("lock").clone();
    assert_eq!(seen, vec!["order-42".to_owned(), "m-2".to_owned()]);
}

#[tokio::test]
async fn testapp_discards_and_drains_as_the_runtime_does() {
    let app = TestApp::new().only(&["ctl_stale"]);
    let report = app.publish("queue.ctlstale", &3u64).await;
    assert!(report.discarded());
    assert!(!report.dead_lettered() && !report.acked());
    assert_eq!(report.attempts(), 1);
    assert!(app.published("dlq.queue.ctlstale").is_empty());

    let draining = TestApp::new().only(&["ctl_long"]).draining();
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        draining.publish("queue.ctllong", &1u64),
    )
    .await
    .expect("ctx.shutdown() resolves in a draining TestApp");
    assert!(report.acked());
}
