//! Payload codecs against a real nats-server: each codec's value
//! published with its `Content-Type`, decoded by a handler taking its
//! wrapper, kept as it was in a dead letter, and run again on replay; a
//! `Content-Type` naming another codec is a `decode` letter naming both.
//! Each beside its `TestApp` run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::codec::{Cbor, Codec, Json, MsgPack, Protobuf};
use jetwire::dlq::Filter;
use jetwire::testing::TestApp;
use jetwire::{App, DlqReason, HandlerError, State, queue};
use jetwire_tests::{config, eventually, header, letters, shared_server, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Job {
    id: u64,
    name: String,
}

/// The same job as a Protocol Buffers message.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoJob {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    name: String,
}

/// Each (codec, job id) a handler decoded.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(&'static str, u64)>>>);

impl Seen {
    fn saw(&self, codec: &'static str, id: u64) {
        self.0.lock().expect("not poisoned").push((codec, id));
    }

    fn count(&self, codec: &'static str, id: u64) -> usize {
        let seen = self.0.lock().expect("not poisoned");
        seen.iter().filter(|s| **s == (codec, id)).count()
    }
}

/// Job 13 fails for good, the first time only: dead-lettered, then
/// replayed and done.
fn run(codec: &'static str, id: u64, seen: &Seen) -> Result<(), HandlerError> {
    let first = seen.count(codec, id) == 0;
    seen.saw(codec, id);
    if id == 13 && first {
        return Err(HandlerError::permanent("unlucky"));
    }
    Ok(())
}

#[queue("queue.codec.json")]
async fn json_job(Json(job): Json<Job>, seen: State<Seen>) -> Result<(), HandlerError> {
    run("json", job.id, &seen)
}

#[queue("queue.codec.msgpack")]
async fn msgpack_job(MsgPack(job): MsgPack<Job>, seen: State<Seen>) -> Result<(), HandlerError> {
    run("msgpack", job.id, &seen)
}

#[queue("queue.codec.cbor")]
async fn cbor_job(Cbor(job): Cbor<Job>, seen: State<Seen>) -> Result<(), HandlerError> {
    run("cbor", job.id, &seen)
}

#[queue("queue.codec.proto")]
async fn proto_job(
    Protobuf(job): Protobuf<ProtoJob>,
    seen: State<Seen>,
) -> Result<(), HandlerError> {
    run("proto", job.id, &seen)
}

/// A bare payload type: JSON.
#[queue("queue.codec.bare")]
async fn bare_job(job: Job, seen: State<Seen>) -> Result<(), HandlerError> {
    run("bare", job.id, &seen)
}

const HANDLERS: &[&str] = &[
    "json_job",
    "msgpack_job",
    "cbor_job",
    "proto_job",
    "bare_job",
];

fn job(id: u64) -> Job {
    Job {
        id,
        name: format!("job {id}"),
    }
}

fn proto(id: u64) -> ProtoJob {
    ProtoJob {
        id,
        name: format!("job {id}"),
    }
}

/// Runs `$body` with `$subject` and `$value` bound to each handler's
/// subject and job `id` in its codec.
macro_rules! for_each_codec {
    ($id:expr, |$subject:ident, $value:ident| $body:expr) => {{
        {
            let ($subject, $value) = ("queue.codec.json", &Json(job($id)));
            $body;
        }
        {
            let ($subject, $value) = ("queue.codec.msgpack", &MsgPack(job($id)));
            $body;
        }
        {
            let ($subject, $value) = ("queue.codec.cbor", &Cbor(job($id)));
            $body;
        }
        {
            let ($subject, $value) = ("queue.codec.proto", &Protobuf(proto($id)));
            $body;
        }
        {
            let ($subject, $value) = ("queue.codec.bare", &job($id));
            $body;
        }
    }};
}

const CODECS: [(&str, &str, &str); 5] = [
    ("json", "queue.codec.json", "application/json"),
    ("msgpack", "queue.codec.msgpack", "application/msgpack"),
    ("cbor", "queue.codec.cbor", "application/cbor"),
    ("proto", "queue.codec.proto", "application/protobuf"),
    ("bare", "queue.codec.bare", "application/json"),
];

#[tokio::test]
async fn each_codec_round_trips_through_publish_handler_dead_letter_and_replay() {
    let prefix = unique_prefix("codecs");
    let seen = Seen::default();
    let app = App::new(config(shared_server(), &prefix, "codecs"))
        .only(HANDLERS)
        .state(seen.clone())
        .start()
        .await
        .expect("app starts");
    let publisher = app.publisher();
    for id in [1, 13] {
        for_each_codec!(id, |subject, value| publisher
            .publish(subject, value)
            .await
            .expect("published"));
    }
    let client = publisher.client().clone();
    let letters = letters(&client, &prefix, 5).await;
    for (codec, subject, content_type) in CODECS {
        assert_eq!(seen.count(codec, 1), 1, "{codec}: job 1 decoded");
        let letter = letters
            .iter()
            .find(|l| l.subject.ends_with(subject))
            .unwrap_or_else(|| panic!("{codec}: a letter"));
        assert_eq!(
            header(letter, "Content-Type"),
            Some(content_type),
            "{codec}"
        );
        assert_eq!(header(letter, "Jetwire-Dlq-Reason"), Some("permanent"));
    }
    let msgpack = letters
        .iter()
        .find(|l| header(l, "Content-Type") == Some("application/msgpack"))
        .expect("the msgpack letter");
    let kept: Job = rmp_serde::from_slice(&msgpack.payload).expect("the bytes as sent");
    assert_eq!(kept, job(13));

    let dlq = app.dead_letters();
    let replayed = dlq.replay_all(&Filter::default()).await.expect("replayed");
    assert_eq!(replayed, 5);
    eventually(Duration::from_secs(20), "each replay handled", || async {
        CODECS
            .iter()
            .all(|(codec, _, _)| seen.count(codec, 13) == 2)
            .then_some(())
    })
    .await;
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_content_type_of_another_codec_is_a_decode_letter_naming_both() {
    let prefix = unique_prefix("codecmix");
    let seen = Seen::default();
    let app = App::new(config(shared_server(), &prefix, "codecs"))
        .only(HANDLERS)
        .state(seen.clone())
        .start()
        .await
        .expect("app starts");
    let publisher = app.publisher();
    // JSON to the MessagePack handler, MessagePack to the JSON ones.
    publisher
        .publish("queue.codec.msgpack", &job(2))
        .await
        .expect("published");
    publisher
        .publish("queue.codec.bare", &MsgPack(job(2)))
        .await
        .expect("published");
    publisher
        .publish("queue.codec.proto", &Cbor(job(2)))
        .await
        .expect("published");
    let client = publisher.client().clone();
    let letters = letters(&client, &prefix, 3).await;
    app.shutdown().await.expect("clean shutdown");
    for (sent, read) in [
        ("application/json", "application/msgpack"),
        ("application/msgpack", "application/json"),
        ("application/cbor", "application/protobuf"),
    ] {
        let letter = letters
            .iter()
            .find(|l| header(l, "Content-Type") == Some(sent))
            .unwrap_or_else(|| panic!("a letter of {sent}"));
        assert_eq!(header(letter, "Jetwire-Dlq-Reason"), Some("decode"));
        let error = header(letter, "Jetwire-Dlq-Error").unwrap_or_default();
        assert!(error.contains(&format!("`{sent}`")), "{error}");
        assert!(error.contains(&format!("`{read}`")), "{error}");
    }
    assert_eq!(
        seen.count("msgpack", 2) + seen.count("bare", 2),
        0,
        "no handler ran"
    );
}

#[tokio::test]
async fn codecs_in_test_app() {
    let seen = Seen::default();
    let app = TestApp::new().only(HANDLERS).state(seen.clone());
    for_each_codec!(1, |subject, value| {
        let report = app.publish(subject, value).await;
        assert!(report.acked(), "{subject}: {:?}", report.error());
    });
    for (codec, _, _) in CODECS {
        assert_eq!(seen.count(codec, 1), 1, "{codec}");
    }
    let mixed = app.publish("queue.codec.msgpack", &job(2)).await;
    assert_eq!(mixed.dlq_reason(), Some(DlqReason::Decode));
    assert!(
        mixed
            .error()
            .is_some_and(|e| e.contains("`application/json`")),
        "{:?}",
        mixed.error()
    );
    assert_eq!(<MsgPack<Job> as Codec>::CONTENT_TYPE, "application/msgpack");
}
