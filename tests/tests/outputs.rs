//! Typed outputs: a handler's `Ok` value is published to its `output`
//! subject before the ack, under the same message id on every run, so a
//! handler run again over the same messages stores each output once.

use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, Config, HandlerError, subscribe};
use jetwire_tests::{eventually, header, shared_server, stream_messages, unique_prefix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Resized {
    id: u64,
    width: u32,
}

#[subscribe("outimg.uploaded", output = "outres.resized", deliver = "all")]
async fn out_resize(id: u64) -> Result<Resized, HandlerError> {
    if id == 0 {
        return Err(HandlerError::permanent("no image 0"));
    }
    Ok(Resized { id, width: 640 })
}

fn config(prefix: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("out")
        .subject_prefix(prefix)
        .build()
        .expect("valid")
}

#[tokio::test]
async fn outputs_are_stored_once_however_often_the_handler_runs() {
    let prefix = unique_prefix("out");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connects");
    let js = async_nats::jetstream::new(client.clone());
    let outputs_stream = jetwire::topology::default_stream(Some(&prefix), "outres.resized");
    let run = || async {
        App::new(config(&prefix))
            .only(&["out_resize"])
            .start()
            .await
            .expect("starts")
    };
    let first = run().await;
    let publisher = first.publisher();
    for id in 0..10u64 {
        publisher
            .publish("outimg.uploaded", &id)
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(20), "nine outputs", || async {
        (stream_messages(&client, &outputs_stream).await.len() == 9).then_some(())
    })
    .await;
    first.shutdown().await.expect("shutdown");

    // The durable goes; the next run delivers every message again
    // (`deliver = "all"`), and the handler publishes every output again.
    let events = js
        .get_stream(jetwire::topology::default_stream(
            Some(&prefix),
            "outimg.uploaded",
        ))
        .await
        .expect("the event stream");
    let mut names = events.consumer_names();
    while let Some(Ok(name)) = futures_util::StreamExt::next(&mut names).await {
        events.delete_consumer(&name).await.expect("deleted");
    }
    let second = run().await;
    eventually(
        Duration::from_secs(20),
        "every message handled again",
        || async {
            let s = &second.stats()[0];
            (s.acked == 9 && s.dead_lettered == 1).then_some(())
        },
    )
    .await;
    second.shutdown().await.expect("shutdown");
    let stored = stream_messages(&client, &outputs_stream).await;
    assert_eq!(stored.len(), 9, "each output stored once across two runs");
    let ids: Vec<&str> = stored
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id"))
        .collect();
    assert!(ids.iter().all(|id| id.ends_with(":0")), "{ids:?}");
    let first: Resized = serde_json::from_slice(&stored[0].payload).expect("JSON");
    assert_eq!(first.width, 640);
}

#[tokio::test]
async fn testapp_publishes_outputs_and_routes_them() {
    let app = TestApp::new().only(&["out_resize"]);
    let report = app.publish("outimg.uploaded", &7u64).await;
    assert!(report.acked());
    let out = app.published("outres.resized");
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].decode::<Resized>().expect("JSON"),
        Resized { id: 7, width: 640 }
    );
    let refused = app.publish("outimg.uploaded", &0u64).await;
    assert!(refused.dead_lettered());
    assert_eq!(
        app.published("outres.resized").len(),
        1,
        "no output for an error"
    );
}

#[test]
fn the_asyncapi_document_has_a_send_operation_per_output() {
    let doc = App::new(config("outdoc")).only(&["out_resize"]).asyncapi();
    jetwire_tests::asyncapi::assert_valid(&doc);
    let send = &doc["operations"]["out_resize.output"];
    assert_eq!(send["action"], "send");
    assert_eq!(
        doc["channels"]["outres.resized"]["address"],
        "outdoc.outres.resized"
    );
}
