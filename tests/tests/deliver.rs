//! Where a new event durable starts (`deliver = ..`), against a real
//! nats-server: messages stored before the app starts, then the app's
//! handlers read from the last of each subject, from a sequence, or from a
//! time, and the server holds the durable so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use jetwire::{App, Context, State, subscribe};
use jetwire_tests::{config, eventually, shared_server, unique_prefix};

/// One delivery: the handler, the subject, the payload.
type Mark = (&'static str, String, u64);

/// What each handler saw, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Mark>>>);

impl Seen {
    fn of(&self, handler: &str) -> Vec<(String, u64)> {
        let seen = self.0.lock().expect("not poisoned");
        seen.iter()
            .filter(|s| s.0 == handler)
            .map(|s| (s.1.clone(), s.2))
            .collect()
    }
}

#[subscribe("dlvrlast.items.*", deliver = "last_per_subject")]
async fn per_subject(n: u64, seen: State<Seen>, ctx: Context) {
    let mark = ("per_subject", ctx.subject().to_owned(), n);
    seen.0.0.lock().expect("not poisoned").push(mark);
}

#[subscribe("dlvrseq.jobs", deliver = "seq:3")]
async fn from_three(n: u64, seen: State<Seen>, ctx: Context) {
    let mark = ("from_three", ctx.subject().to_owned(), n);
    seen.0.0.lock().expect("not poisoned").push(mark);
}

#[subscribe("dlvrtime.jobs", deliver = "2000-01-01T00:00:00Z")]
async fn since_2000(n: u64, seen: State<Seen>, ctx: Context) {
    let mark = ("since_2000", ctx.subject().to_owned(), n);
    seen.0.0.lock().expect("not poisoned").push(mark);
}

/// The stream the app would make for `subject`, made first so messages
/// are stored before any durable exists.
async fn stream_for(js: &jetstream::Context, prefix: &str, subject: &str) {
    let subjects = jetwire::topology::default_stream_subjects(subject);
    js.create_stream(jetstream::stream::Config {
        name: jetwire::topology::default_stream(Some(prefix), subject),
        subjects: vec![format!("{prefix}.{subjects}")],
        ..Default::default()
    })
    .await
    .expect("stream made");
}

#[tokio::test]
async fn a_new_durable_starts_where_deliver_says() {
    let prefix = unique_prefix("deliver");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    for subject in ["dlvrlast.items.a", "dlvrseq.jobs", "dlvrtime.jobs"] {
        stream_for(&js, &prefix, subject).await;
    }
    let publish = |subject: &'static str, n: u64| {
        let js = js.clone();
        let subject = format!("{prefix}.{subject}");
        async move {
            js.publish(subject, serde_json::to_vec(&n).expect("json").into())
                .await
                .expect("sent")
                .await
                .expect("stored");
        }
    };
    for (subject, n) in [
        ("dlvrlast.items.a", 1),
        ("dlvrlast.items.b", 2),
        ("dlvrlast.items.a", 3),
        ("dlvrlast.items.b", 4),
        ("dlvrlast.items.a", 5),
    ] {
        publish(subject, n).await;
    }
    for n in 1..=5 {
        publish("dlvrseq.jobs", n).await;
        publish("dlvrtime.jobs", n).await;
    }
    let seen = Seen::default();
    let app = App::new(config(shared_server(), &prefix, "deliver"))
        .only(&["per_subject", "from_three", "since_2000"])
        .state(seen.clone())
        .start()
        .await
        .expect("app starts");
    eventually(
        Duration::from_secs(10),
        "every expected delivery",
        || async {
            let done = seen.of("per_subject").len() >= 2
                && seen.of("from_three").len() >= 3
                && seen.of("since_2000").len() >= 5;
            done.then_some(())
        },
    )
    .await;
    // Stored earlier ones would have come first, in stream order.
    let mut last = seen.of("per_subject");
    last.sort();
    assert_eq!(
        last,
        [
            ("dlvrlast.items.a".into(), 5),
            ("dlvrlast.items.b".into(), 4)
        ]
    );
    let from_three: Vec<u64> = seen.of("from_three").iter().map(|s| s.1).collect();
    assert_eq!(from_three, [3, 4, 5]);
    let since: Vec<u64> = seen.of("since_2000").iter().map(|s| s.1).collect();
    assert_eq!(since, [1, 2, 3, 4, 5]);
    let policies: Vec<DeliverPolicy> = {
        let mut out = Vec::new();
        for stat in app.stats() {
            let stream = js
                .get_stream(jetwire::topology::default_stream(
                    Some(&prefix),
                    stat.subject,
                ))
                .await
                .expect("stream");
            let mut consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer(&stat.durable).await.expect("durable");
            out.push(consumer.info().await.expect("info").config.deliver_policy);
        }
        out
    };
    app.shutdown().await.expect("clean shutdown");
    for wanted in [
        DeliverPolicy::LastPerSubject,
        DeliverPolicy::ByStartSequence { start_sequence: 3 },
    ] {
        assert!(policies.contains(&wanted), "{wanted:?} in {policies:?}");
    }
    let since_2000 = policies.iter().any(|p| {
        matches!(p, DeliverPolicy::ByStartTime { start_time } if start_time.unix_timestamp() == 946_684_800)
    });
    assert!(since_2000, "2000-01-01T00:00:00Z in {policies:?}");
}
