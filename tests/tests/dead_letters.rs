//! Dead letters of originals that carry JetStream's control headers: the
//! letter is stored, and the original headers are kept under
//! `Jetwire-Dlq-Orig-<name>` instead of steering the letter's own publish.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use jetwire::{App, HandlerError, queue};
use jetwire_tests::{config, dead_letters, header, shared_server, unique_prefix};

#[queue("queue.dl-control", max_deliver = 3, backoff = ["100ms"])]
async fn dl_control(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused on purpose"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_original_with_control_headers_is_dead_lettered() {
    let server = shared_server();
    let prefix = unique_prefix("dl-control");
    let app = App::new(config(server, &prefix, "dl"))
        .only(&["dl_control"])
        .start()
        .await
        .expect("start");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let subject = format!("{prefix}.queue.dl-control");
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Expected-Stream", queue.as_str());
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    headers.insert("Nats-Msg-Id", "control-1");
    js.publish_with_headers(subject, headers, "1".into())
        .await
        .expect("publish")
        .await
        .expect("the original is stored");

    let letters = dead_letters(&client, &prefix, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(header(letter, jetwire::dlq::REASON), Some("permanent"));
    assert_eq!(
        header(letter, "Jetwire-Dlq-Orig-Nats-Expected-Stream"),
        Some(queue.as_str())
    );
    assert_eq!(
        header(
            letter,
            "Jetwire-Dlq-Orig-Nats-Expected-Last-Subject-Sequence"
        ),
        Some("0")
    );
    assert_eq!(
        header(letter, "Jetwire-Dlq-Orig-Nats-Msg-Id"),
        Some("control-1")
    );
    assert_eq!(header(letter, jetwire::dlq::MESSAGE_ID), Some("control-1"));
    assert_eq!(header(letter, "Nats-Expected-Stream"), None);
    app.shutdown().await.expect("shutdown");
}
