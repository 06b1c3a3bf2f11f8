//! Publishing: headers, message ids, validation, and what a handler's
//! publishes carry forward.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Context, PublishError, PublishOptions, Publisher, State, queue, subscribe};
use jetwire_tests::{config, eventually, header, shared_server, stream_messages, unique_prefix};

/// What `next` saw: message id, correlation id, traceparent.
type Sighting = (String, Option<String>, Option<String>);

#[derive(Clone, Default)]
struct Forwarded(Arc<Mutex<Vec<Sighting>>>);

/// Re-publishes what it gets to `queue.pub-next`.
#[subscribe("pub.in", deliver = "all")]
async fn forward(n: u64, ctx: Context) -> Result<(), jetwire::HandlerError> {
    ctx.publish("queue.pub-next", &(n + 1)).await?;
    Ok(())
}

/// Records the correlation id and traceparent it sees.
#[queue("queue.pub-next")]
async fn next(_n: u64, ctx: Context, seen: State<Forwarded>) {
    let h = |k: &str| ctx.headers().get(k).map(|v| v.as_str().to_owned());
    seen.0.0.lock().expect("not poisoned").push((
        ctx.message_id().to_owned(),
        h("Jetwire-Correlation-Id"),
        h("traceparent"),
    ));
}

#[tokio::test]
async fn publisher_labels_every_message() {
    let prefix = unique_prefix("labels");
    let app = App::new(config(shared_server(), &prefix, "svc"))
        .only(&["forward"])
        .start()
        .await
        .expect("starts");
    let publisher = Publisher::connect(&config(shared_server(), &prefix, "svc"))
        .await
        .expect("connects");
    let receipt = publisher.publish("pub.in", &1u64).await.expect("stored");
    assert_eq!(
        receipt.stream,
        jetwire::topology::default_stream(Some(&prefix), "pub.in")
    );
    assert!(!receipt.duplicate);
    let stored = stream_messages(publisher.client(), &receipt.stream).await;
    let m = stored
        .iter()
        .find(|m| m.sequence == receipt.sequence)
        .expect("stored message");
    assert_eq!(m.subject.as_str(), format!("{prefix}.pub.in"));
    let id = header(m, "Nats-Msg-Id").expect("message id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(&id[14..15], "7", "a UUIDv7: {id}");
    assert_eq!(header(m, "Content-Type"), Some("application/json"));
    assert_eq!(header(m, "Jetwire-Correlation-Id"), Some(id));
    app.shutdown().await.expect("stop");
}

#[tokio::test]
async fn same_message_id_is_stored_once() {
    let prefix = unique_prefix("dedupe");
    let app = App::new(config(shared_server(), &prefix, "svc"))
        .only(&["forward"])
        .start()
        .await
        .expect("starts");
    let publisher = app.publisher();
    let opts = || PublishOptions::new().message_id("order-42");
    let first = publisher
        .publish_with("pub.in", &1u64, opts())
        .await
        .expect("stored");
    let again = publisher
        .publish_with("pub.in", &1u64, opts())
        .await
        .expect("acked");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.sequence, again.sequence);
    app.shutdown().await.expect("stop");
}

#[tokio::test]
async fn hostile_subjects_are_refused_and_nothing_is_sent() {
    let prefix = unique_prefix("hostile");
    let app = App::new(config(shared_server(), &prefix, "svc"))
        .only(&["forward"])
        .start()
        .await
        .expect("starts");
    let publisher = app.publisher();
    let before = stream_messages(
        publisher.client(),
        &jetwire::topology::default_stream(Some(&prefix), "pub.in"),
    )
    .await
    .len();
    let long = format!("pub.{}", "x".repeat(300));
    for bad in [
        "",
        "pub..in",
        "pub.in.",
        ".pub",
        "pub.*",
        "pub.>",
        "pub in",
        "pub\r\nin",
        "pub\tin",
        "$JS.API.STREAM.LIST",
        "pub.ïn",
        &long,
    ] {
        let err = publisher.publish(bad, &1u64).await.expect_err(bad);
        assert!(
            matches!(err, PublishError::InvalidSubject(_)),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().starts_with("cannot publish"), "{err}");
    }
    let err = publisher
        .publish_with(
            "pub.in",
            &1u64,
            PublishOptions::new().header("Bad:Name", "x"),
        )
        .await
        .expect_err("bad header");
    assert!(matches!(err, PublishError::InvalidHeader { .. }));
    let after = stream_messages(
        publisher.client(),
        &jetwire::topology::default_stream(Some(&prefix), "pub.in"),
    )
    .await
    .len();
    assert_eq!(before, after, "nothing was sent");
    app.shutdown().await.expect("stop");
}

#[tokio::test]
async fn no_stream_for_the_subject_is_a_clear_error() {
    let prefix = unique_prefix("nostream");
    let publisher = Publisher::connect(&config(shared_server(), &prefix, "svc"))
        .await
        .expect("connects");
    let err = publisher
        .publish("nobody.here", &1u64)
        .await
        .expect_err("no stream captures it");
    assert!(
        err.to_string()
            .contains("does a stream capture this subject?"),
        "{err}"
    );
}

#[tokio::test]
async fn handlers_carry_correlation_and_trace_forward() {
    let prefix = unique_prefix("corr");
    let seen = Forwarded::default();
    let app = App::new(config(shared_server(), &prefix, "svc"))
        .only(&["forward", "next"])
        .state(seen.clone())
        .start()
        .await
        .expect("starts");
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let opts = PublishOptions::new()
        .correlation_id("corr-1")
        .header("traceparent", tp)
        .message_id("in-1");
    app.publisher()
        .publish_with("pub.in", &1u64, opts)
        .await
        .expect("stored");
    let got = eventually(Duration::from_secs(10), "the forwarded message", || async {
        seen.0.lock().expect("not poisoned").first().cloned()
    })
    .await;
    assert_eq!(got.1.as_deref(), Some("corr-1"));
    assert_eq!(got.2.as_deref(), Some(tp));
    assert!(
        got.0.starts_with("in-1:"),
        "derived from the inbound id: {}",
        got.0
    );
    app.shutdown().await.expect("stop");
}

#[tokio::test]
async fn a_publish_whose_server_dies_before_answering_is_sent_again_once_reconnected() {
    let mut server = jetwire_tests::Server::start();
    let prefix = unique_prefix("resend");
    let publisher = Publisher::connect(&config(&server, &prefix, "svc"))
        .await
        .expect("connects");
    let client = publisher.client().clone();
    async_nats::jetstream::new(client.clone())
        .create_stream(async_nats::jetstream::stream::Config {
            name: format!("{}_RESEND", prefix.to_uppercase()),
            subjects: vec![format!("{prefix}.resend.>")],
            ..Default::default()
        })
        .await
        .expect("stream");

    // Frozen, the server takes the request into its socket and never reads it.
    server.pause();
    let written = client.statistics().out_messages.load(Ordering::Relaxed);
    let publishing = tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.publish("resend.one", &1u64).await }
    });
    eventually(Duration::from_secs(10), "the publish to be written", || {
        let sent = client.statistics().out_messages.load(Ordering::Relaxed) > written;
        async move { sent.then_some(()) }
    })
    .await;
    client.flush().await.expect("written to the socket");
    // Killed frozen, the request is gone with it; the store stays.
    server.kill();
    server.restart();

    // Without sending again, the publish fails with async-nats' ack timeout.
    let receipt = tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .expect("the publish ends")
        .expect("the task ran")
        .expect("stored after the restart, not timed out");
    assert!(!receipt.duplicate, "the first send never reached the store");
}
