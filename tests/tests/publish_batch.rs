//! Batches: `publish_batch` returns a receipt per message, in order;
//! `publish_fast` stores a whole batch as the server's fast batch where
//! the stream allows it and as pipelined publishes where it does not, in
//! order, each message id once, and stops at a refused message with
//! nothing after it stored.

use async_nats::jetstream::{self, stream};
use futures_util::StreamExt as _;
use jetwire::publish::Message;
use jetwire::{PublishErrorKind, PublishOptions, Publisher};
use jetwire_tests::{config, header, shared_server, stream_messages, unique_prefix};

/// Numbered messages `range` to `subject`, each under the id `<tag>-<n>`.
fn numbered(subject: &str, tag: &str, range: std::ops::Range<u64>) -> Vec<Message> {
    range
        .map(|n| {
            let options = PublishOptions::new()
                .message_id(format!("{tag}-{n}"))
                .header("X-Batch", tag);
            Message::json(subject, &n, options).expect("a message")
        })
        .collect()
}

/// The numbers stored in `stream`, in stream order.
async fn stored(client: &async_nats::Client, stream: &str) -> Vec<u64> {
    stream_messages(client, stream)
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("a number"))
        .collect()
}

async fn publisher(name: &str) -> (Publisher, String, String) {
    let prefix = unique_prefix(name);
    let publisher = Publisher::connect(&config(shared_server(), &prefix, "svc"))
        .await
        .expect("connects");
    let streams = publisher
        .ensure_streams(&["pb.data"])
        .await
        .expect("the stream");
    (publisher, prefix, streams[0].clone())
}

/// A stream made by hand on `<prefix>.hand.>`, as a user's own would be.
async fn own_stream(client: &async_nats::Client, prefix: &str, batched: bool, max: i32) -> String {
    let name = format!("{prefix}_HAND").replace(['.', '-'], "_");
    jetstream::new(client.clone())
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.hand.>")],
            allow_batch_publish: batched,
            max_message_size: max,
            ..Default::default()
        })
        .await
        .expect("the stream");
    name
}

#[tokio::test]
async fn publish_batch_returns_a_receipt_for_each_message_in_order() {
    let (publisher, _, stream) = publisher("pb-receipts").await;
    let receipts = publisher
        .publish_batch(numbered("pb.data", "r", 0..600))
        .await
        .expect("stored");
    assert_eq!(receipts.len(), 600);
    assert!(receipts.iter().all(|r| r.stream == stream && !r.duplicate));
    assert!(
        receipts
            .windows(2)
            .all(|r| r[0].sequence + 1 == r[1].sequence)
    );
    let numbers = stored(publisher.client(), &stream).await;
    assert_eq!(numbers, (0..600).collect::<Vec<_>>());
}

#[tokio::test]
async fn publish_fast_is_the_servers_fast_batch_on_a_stream_jetwire_made() {
    let (publisher, prefix, stream) = publisher("pb-fast").await;
    let info = jetstream::new(publisher.client().clone())
        .get_stream(&stream)
        .await
        .expect("the stream")
        .cached_info()
        .clone();
    assert!(
        info.config.allow_batch_publish,
        "jetwire's streams allow fast batches"
    );
    // The server answers a fast batch on `$FI` reply subjects under the
    // client's inbox prefix: one of this test's own.
    let inbox = format!("_FAST_{}", prefix.replace(['.', '-'], "_"));
    let client = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(inbox.clone())
        .connect(shared_server().url())
        .await
        .expect("connects");
    let publisher = Publisher::from_client(client, &config(shared_server(), &prefix, "svc"));
    let watcher = async_nats::connect(shared_server().url())
        .await
        .expect("connects");
    let mut answers = watcher
        .subscribe(format!("{inbox}.>"))
        .await
        .expect("subscribed");
    watcher.flush().await.expect("flushed");
    let receipt = publisher
        .publish_fast(numbered("pb.data", "f", 0..5000))
        .await
        .expect("stored");
    assert_eq!(receipt.stream, stream);
    assert_eq!(receipt.count, 5000);
    let all = stream_messages(publisher.client(), &stream).await;
    assert_eq!(receipt.last_sequence, all.last().expect("stored").sequence);
    let numbers: Vec<u64> = all
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("a number"))
        .collect();
    assert_eq!(
        numbers,
        (0..5000).collect::<Vec<_>>(),
        "every message, in order, once"
    );
    assert!(all.iter().enumerate().all(|(n, m)| {
        header(m, "Nats-Msg-Id") == Some(format!("f-{n}").as_str())
            && header(m, "X-Batch") == Some("f")
    }));
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), answers.next())
        .await
        .expect("the server answered the batch")
        .expect("an answer");
    assert!(
        answer.subject.ends_with(".$FI"),
        "a fast batch: {}",
        answer.subject
    );
}

#[tokio::test]
async fn publish_fast_again_stores_each_message_id_once() {
    let (publisher, _, stream) = publisher("pb-again").await;
    let first = publisher
        .publish_fast(numbered("pb.data", "a", 0..40))
        .await
        .expect("stored");
    // All already stored, then a half stored and a half new.
    let again = publisher
        .publish_fast(numbered("pb.data", "a", 0..40))
        .await
        .expect("stored");
    let more = publisher
        .publish_fast(numbered("pb.data", "a", 20..60))
        .await
        .expect("stored");
    assert_eq!((first.count, again.count, more.count), (40, 40, 40));
    assert_eq!(
        stored(publisher.client(), &stream).await,
        (0..60).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn publish_fast_falls_back_to_publishes_where_the_stream_does_not_allow_it() {
    let (publisher, prefix, _) = publisher("pb-fallback").await;
    let stream = own_stream(publisher.client(), &prefix, false, -1).await;
    let receipt = publisher
        .publish_fast(numbered("hand.data", "n", 0..300))
        .await
        .expect("stored");
    assert_eq!(
        (receipt.stream.as_str(), receipt.count),
        (stream.as_str(), 300)
    );
    assert_eq!(
        stored(publisher.client(), &stream).await,
        (0..300).collect::<Vec<_>>(),
        "the refused first message is sent again, once"
    );
}

#[tokio::test]
async fn a_refused_message_ends_a_fast_batch_before_it() {
    let (publisher, prefix, _) = publisher("pb-refused").await;
    let stream = own_stream(publisher.client(), &prefix, true, 1024).await;
    let mut messages = numbered("hand.data", "x", 0..50);
    messages[20] =
        Message::json("hand.data", &"x".repeat(2000), PublishOptions::new()).expect("a message");
    let error = publisher
        .publish_fast(messages)
        .await
        .expect_err("message 20 is over the stream's size");
    assert_eq!(error.index, 20, "{error}");
    assert!(
        matches!(error.error.kind(), PublishErrorKind::Refused(Some(_))),
        "{error}"
    );
    assert!(
        error.to_string().contains("hand.data"),
        "names the subject: {error}"
    );
    assert_eq!(
        stored(publisher.client(), &stream).await,
        (0..20).collect::<Vec<_>>(),
        "what came before it, and nothing after"
    );
}

/// A server killed while a fast batch runs: the batch ends with an error
/// at a message before which everything is stored, and sending the rest
/// again (same ids) leaves every message in the stream once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_batch_through_a_server_kill_loses_and_repeats_nothing() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(jetwire_tests::Server::start()));
    let url = server.lock().expect("not poisoned").url();
    let prefix = unique_prefix("pb-kill");
    let client = async_nats::connect(url).await.expect("connects");
    let cfg = config(&server.lock().expect("not poisoned"), &prefix, "svc");
    let publisher = Publisher::from_client(client.clone(), &cfg);
    let stream = publisher
        .ensure_streams(&["pb.data"])
        .await
        .expect("the stream")[0]
        .clone();
    const N: u64 = 20_000;
    const KILL_AT: u64 = 5_000;
    // The server is killed, and started again, as message 5,000 is taken
    // from the batch: part of the batch is stored, part is on its way.
    let messages = numbered("pb.data", "k", 0..N).into_iter().zip(0..).map({
        let server = server.clone();
        move |(message, n)| {
            if n == KILL_AT {
                let mut server = server.lock().expect("not poisoned");
                server.kill();
                server.restart();
            }
            message
        }
    });
    let resend_from = match publisher.publish_fast(messages).await {
        Ok(receipt) => panic!("a batch through a kill cannot all be confirmed: {receipt:?}"),
        Err(error) => error.index as u64,
    };
    assert!(
        resend_from <= KILL_AT,
        "only what was sent before the kill: {resend_from}"
    );
    let stored_then = stored(&client, &stream).await;
    let lost = (resend_from as usize).saturating_sub(stored_then.len());
    assert_eq!(
        stored_then[..resend_from as usize],
        (0..resend_from).collect::<Vec<_>>()[..],
        "everything before the index is stored, in order"
    );
    publisher
        .publish_fast(numbered("pb.data", "k", resend_from..N))
        .await
        .expect("the rest stored");
    let all = stored(&client, &stream).await;
    let duplicated = all.len().saturating_sub(N as usize);
    assert_eq!((lost, duplicated), (0, 0), "lost, duplicated");
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "every message once, in order"
    );
}
