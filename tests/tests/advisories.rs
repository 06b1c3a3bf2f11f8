//! The max-deliveries advisory reader acts only on advisories the server
//! could have sent about this deployment's own durables: forged, malformed
//! and foreign ones copy nothing and delete nothing, and the reader goes on.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use jetwire::queue;
use jetwire::registry::Kind;
use jetwire_tests::{dead_letters, eventually, header, started_alone};

#[queue("queue.adv-own", max_deliver = 2)]
async fn adv_own(_n: u64) {}

/// The durable of `adv_own` under `prefix`.
fn own_durable(prefix: &str) -> String {
    jetwire::topology::durable_for(
        Some(prefix),
        "adv",
        Kind::Queue,
        "adv_own",
        "queue.adv-own",
        None,
    )
}

/// Another service's durable, named as if of deployment `prefix`.
fn foreign_durable(prefix: &str) -> String {
    format!("{}_foreign", prefix.replace('.', "_"))
}

fn advisory_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
}

/// The delivery after which the server gives up on an `adv_own` message,
/// and advises: its `max_deliver` of 2, and 20 hand-backs.
const LAST: u64 = 2 + 20;

fn advisory(stream: &str, consumer: &str, seq: u64, deliveries: u64) -> bytes::Bytes {
    serde_json::json!({
        "type": "io.nats.jetstream.advisory.v1.max_deliver",
        "stream": stream,
        "consumer": consumer,
        "stream_seq": seq,
        "deliveries": deliveries,
    })
    .to_string()
    .into()
}

async fn store(js: &jetstream::Context, subject: String) -> u64 {
    js.publish(subject, "1".into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

async fn still_there(js: &jetstream::Context, stream: &str, seq: u64) -> bool {
    let stream = js.get_stream(stream).await.expect("stream");
    stream.get_raw_message(seq).await.is_ok()
}

/// Messages no handler consumes: three in the work-queue stream, one in a
/// stream jetwire has nothing to do with, one for another service's
/// durable on jetwire's work-queue stream; their sequences.
struct Bystanders {
    crlf: u64,
    few: u64,
    genuine: u64,
    other: String,
    others: u64,
    foreigns: u64,
}

async fn bystanders(js: &jetstream::Context, prefix: &str, queue: &str) -> Bystanders {
    // Messages no handler consumes, in the work-queue stream and in a
    // stream jetwire has nothing to do with.
    let idle = |n: u32| format!("{prefix}.queue.adv-idle.{n}");
    let (crlf, few, genuine) = (
        store(js, idle(1)).await,
        store(js, idle(2)).await,
        store(js, idle(3)).await,
    );
    let other = format!(
        "{}_ADVOTHER",
        prefix.to_uppercase().replace(['-', '.'], "_")
    );
    js.create_stream(stream::Config {
        name: other.clone(),
        subjects: vec![format!("{prefix}.advother.>")],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("another service's stream");
    let others = store(js, format!("{prefix}.advother.x")).await;
    // Another service's durable on jetwire's work-queue stream, named like
    // the deployment's and described like jetwire's, without the owner
    // jetwire writes into its durables' metadata.
    let q = js.get_stream(queue).await.expect("queue stream");
    q.create_consumer(pull::Config {
        durable_name: Some(foreign_durable(prefix)),
        description: Some("jetwire: adv::adv_own in app adv".into()),
        filter_subject: format!("{prefix}.queue.adv-foreign"),
        max_deliver: 1,
        ..Default::default()
    })
    .await
    .expect("a foreign durable");
    let foreigns = store(js, format!("{prefix}.queue.adv-foreign")).await;

    Bystanders {
        crlf,
        few,
        genuine,
        other,
        others,
        foreigns,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_malformed_and_foreign_advisories_change_nothing() {
    let (app, prefix, client) = started_alone("adv", &["adv_own"]).await;
    let js = jetstream::new(client.clone());
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let durable = own_durable(&prefix);

    let Bystanders {
        crlf,
        few,
        genuine,
        other,
        others,
        foreigns,
    } = bystanders(&js, &prefix, &queue).await;

    let forged = [
        // A consumer holding CR/LF: once a panic in the reader.
        (
            advisory_subject(&queue, &durable),
            advisory(&queue, "x\r\nX-Evil: 1", crlf, LAST),
        ),
        // The subject names jetwire's stream, the body another one.
        (
            advisory_subject(&queue, &durable),
            advisory(&other, &durable, others, LAST),
        ),
        // Another service's durable on jetwire's stream.
        (
            advisory_subject(&queue, &foreign_durable(&prefix)),
            advisory(&queue, &foreign_durable(&prefix), foreigns, 1),
        ),
        // Fewer deliveries than the durable allows.
        (
            advisory_subject(&queue, &durable),
            advisory(&queue, &durable, few, LAST - 1),
        ),
        (advisory_subject(&queue, &durable), "{not json".into()),
        // Last, one that adds up: the reader must still be there for it.
        (
            advisory_subject(&queue, &durable),
            advisory(&queue, &durable, genuine, LAST),
        ),
    ];
    for (subject, body) in forged {
        client.publish(subject, body).await.expect("publish");
    }
    client.flush().await.expect("flush");

    let letters = dead_letters(&client, &prefix, Duration::from_secs(20)).await;
    let sequences: Vec<Option<&str>> = letters
        .iter()
        .map(|m| header(m, jetwire::dlq::SEQUENCE))
        .collect();
    assert_eq!(sequences, [Some(genuine.to_string().as_str())]);
    assert_eq!(header(&letters[0], jetwire::dlq::HANDLER), Some("adv_own"));
    let owner = js
        .get_stream(&queue)
        .await
        .expect("queue stream")
        .consumer_info(&durable)
        .await
        .expect("own durable")
        .config
        .metadata
        .clone();
    assert_eq!(
        (
            owner.get("jetwire.handler").map(String::as_str),
            owner.get("jetwire.app").map(String::as_str)
        ),
        (Some("advisories::adv_own"), Some("adv")),
        "the durable's metadata names its owner"
    );
    assert!(
        !still_there(&js, &queue, genuine).await,
        "a dead-lettered work-queue original is deleted"
    );
    for (stream, seq, what) in [
        (&queue, crlf, "the CR/LF advisory's message"),
        (
            &queue,
            few,
            "the message of an advisory with too few deliveries",
        ),
        (&other, others, "the other stream's message"),
        (&queue, foreigns, "the foreign durable's message"),
    ] {
        assert!(still_there(&js, stream, seq).await, "{what} was deleted");
    }
    app.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_advisory_capture_deleted_under_a_running_app_is_made_again() {
    let (app, prefix, client) = started_alone("adv-gone", &["adv_own"]).await;
    let js = jetstream::new(client.clone());
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let capture = jetwire::topology::default_stream(Some(&prefix), "jetwire_advisories");
    js.delete_stream(&capture)
        .await
        .expect("an operator deletes the advisory capture");
    eventually(Duration::from_secs(20), "the capture made again", || {
        let js = js.clone();
        let capture = capture.clone();
        async move {
            let stream = js.get_stream(&capture).await.ok()?;
            let mut consumers = stream.consumer_names();
            consumers.next().await.and_then(Result::ok).map(|_| ())
        }
    })
    .await;
    let durable = own_durable(&prefix);
    let seq = store(&js, format!("{prefix}.queue.adv-idle.9")).await;
    client
        .publish(
            advisory_subject(&queue, &durable),
            advisory(&queue, &durable, seq, LAST),
        )
        .await
        .expect("publish");
    let letters = dead_letters(&client, &prefix, Duration::from_secs(20)).await;
    assert_eq!(
        header(&letters[0], jetwire::dlq::SEQUENCE),
        Some(seq.to_string().as_str())
    );
    app.shutdown().await.expect("shutdown");
}
