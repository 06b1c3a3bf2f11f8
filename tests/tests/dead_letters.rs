//! Dead letters of hostile or extreme originals: one that carries
//! JetStream's control headers (kept under `Jetwire-Dlq-Orig-<name>`
//! instead of steering the letter's own publish), and one so close to the
//! server's `max_payload` that the letter's own headers would not fit.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use jetwire::{HandlerError, queue};
use jetwire_tests::{dead_letters, header, started_alone};

#[queue("queue.dl-control", max_deliver = 3, backoff = ["100ms"])]
async fn dl_control(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused on purpose"))
}

#[queue("queue.dl-large", max_deliver = 3, backoff = ["100ms"])]
async fn dl_large(_raw: jetwire::Raw) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused on purpose"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_near_max_payload_is_dead_lettered_cut_to_fit() {
    // The shared server has the default max_payload of 1 MiB.
    let (app, prefix, client) = started_alone("dl-large", &["dl_large"]).await;
    let publisher = app.publisher();
    let max_payload = publisher.client().server_info().max_payload;
    assert_eq!(max_payload, 1 << 20, "the server's default");
    let size = max_payload - 200;
    publisher
        .publish_raw("queue.dl-large", vec![b'x'; size], Default::default())
        .await
        .expect("the original fits and is stored");
    let letters = dead_letters(&client, &prefix, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        header(letter, jetwire::dlq::TRUNCATED),
        Some(size.to_string().as_str())
    );
    assert!(letter.payload.len() < size && letter.payload.len() > size - 2048);
    // Written by the handler's own delivery, not later by the advisory path.
    assert_eq!(header(letter, jetwire::dlq::ATTEMPTS), Some("1"));
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    assert_eq!(header(letter, jetwire::dlq::STREAM), Some(queue.as_str()));
    assert!(header(letter, jetwire::dlq::SEQUENCE).is_some());
    app.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_original_with_control_headers_is_dead_lettered() {
    let (app, prefix, client) = started_alone("dl-control", &["dl_control"]).await;
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

#[queue("queue.dl-gone", max_deliver = 3, backoff = ["100ms"])]
async fn dl_gone(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused on purpose"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_stream_deleted_under_a_running_app_is_made_again() {
    let (app, prefix, client) = started_alone("dl-gone", &["dl_gone"]).await;
    let js = jetstream::new(client.clone());
    js.delete_stream(jetwire_tests::dlq_stream(&prefix))
        .await
        .expect("an operator deletes the DLQ");
    app.publisher()
        .publish("queue.dl-gone", &1u64)
        .await
        .expect("published");
    let letters = dead_letters(&client, &prefix, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(header(&letters[0], jetwire::dlq::ATTEMPTS), Some("1"));
    app.shutdown().await.expect("shutdown");
}
