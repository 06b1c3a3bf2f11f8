//! The transactional outbox on a real PostgreSQL and a real SQLite file,
//! relayed into a real nats-server: commit and rollback, relays sharing
//! work, per-key order through publish failures, a failed row holding its
//! key back, NATS down mid-run, and bad input refused before commit.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use jetwire::async_nats::{self, jetstream};
use jetwire::{PublishOptions, RunningApp};
use jetwire_sql::Outbox;
use jetwire_sql::outbox::OutboxStats;
use jetwire_tests::sql::{Row, TestDb, start_relay};
use jetwire_tests::{Server, eventually, header, shared_server, stream_messages, unique_prefix};
use serde_json::json;

/// An app with no handlers, running the relay of `db`'s outbox.
async fn relay(
    server: &Server,
    prefix: &str,
    db: &TestDb,
    tune: impl FnOnce(Outbox) -> Outbox,
) -> (RunningApp, OutboxStats) {
    let outbox = tune(
        Outbox::new(db.pool())
            .tables(db.tables().clone())
            .poll_interval(Duration::from_millis(20)),
    );
    start_relay(&server.url(), prefix, outbox).await
}

fn row(subject: &str, payload: serde_json::Value) -> Row {
    (subject.to_owned(), payload, PublishOptions::new())
}

#[tokio::test]
async fn a_rolled_back_transaction_publishes_nothing_and_a_committed_one_publishes_once() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    for db in TestDb::both("commit").await {
        let prefix = unique_prefix(&format!("commit-{}", db.kind()));
        let (running, stats) = relay(server, &prefix, &db, |o| o).await;
        let streams = running
            .publisher()
            .ensure_streams(&["outbox.created"])
            .await
            .expect("streams");
        db.enqueue(vec![row("outbox.created", json!({"n": 0}))], false)
            .await
            .expect("enqueued, then rolled back");
        let ids = db
            .enqueue(
                (1..=10)
                    .map(|n| row("outbox.created", json!({"n": n})))
                    .collect(),
                true,
            )
            .await
            .expect("committed");
        let stored = eventually(
            Duration::from_secs(20),
            "10 stored, none pending",
            || async {
                let m = stream_messages(&client, &streams[0]).await;
                (m.len() >= 10 && db.count("pending").await == 0).then_some(m)
            },
        )
        .await;
        assert_eq!(stored.len(), 10, "{}", db.kind());
        for (n, (m, id)) in stored.iter().zip(&ids).enumerate() {
            assert_eq!(header(m, "Nats-Msg-Id"), Some(id.as_str()));
            let payload: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            assert_eq!(payload, json!({"n": n + 1}));
        }
        assert_eq!(stats.published(), 10);
        assert_eq!(db.count("published").await + db.count("failed").await, 0);
        running.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn relays_in_three_replicas_share_the_work_and_publish_each_row_once() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let db = TestDb::postgres("three").await;
    let prefix = unique_prefix("three");
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(relay(server, &prefix, &db, |o| o.batch(20)).await);
    }
    let streams = relays[0]
        .0
        .publisher()
        .ensure_streams(&["shared.work"])
        .await
        .expect("streams");
    const ROWS: usize = 3000;
    let mut ids = HashSet::new();
    for chunk in 0..30 {
        let rows = (0..100)
            .map(|n| row("shared.work", json!({"n": chunk * 100 + n})))
            .collect();
        ids.extend(db.enqueue(rows, true).await.expect("committed"));
    }
    let stored = eventually(Duration::from_secs(60), "every row stored", || async {
        let m = stream_messages(&client, &streams[0]).await;
        (m.len() >= ROWS && db.count("pending").await == 0).then_some(m)
    })
    .await;
    let stored_ids: HashSet<String> = stored
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id").map(str::to_owned))
        .collect();
    assert_eq!(stored.len(), ROWS);
    assert_eq!(stored_ids, ids);
    let each: Vec<u64> = relays.iter().map(|(_, s)| s.published()).collect();
    // Every publish any relay made is counted: a row published twice by
    // two relays would count twice, although the stream keeps it once.
    assert_eq!(each.iter().sum::<u64>(), ROWS as u64, "{each:?}");
    assert!(each.iter().all(|n| *n > 0), "a relay did nothing: {each:?}");
    for (app, _) in relays {
        app.shutdown().await.expect("shutdown");
    }
}

/// Rows of 50 keys, 200 each, into a work queue that holds 30 messages
/// and refuses more: the relay's publishes fail again and again while a
/// slow reader frees room, and each key's messages still arrive in order.
#[tokio::test]
async fn rows_of_one_key_keep_their_order_through_publish_failures() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    for db in TestDb::both("order").await {
        let prefix = unique_prefix(&format!("order-{}", db.kind()));
        let stream = format!("KEYED_{}", db.kind().to_uppercase());
        let stream = format!(
            "{}_{stream}",
            prefix.to_uppercase().replace(['.', '-'], "_")
        );
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.keyed.>")],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            max_messages: 30,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("a small work queue");
        const KEYS: usize = 50;
        const PER_KEY: usize = 200;
        for n in 0..PER_KEY {
            let rows = (0..KEYS)
                .map(|k| {
                    (
                        format!("keyed.k{k}"),
                        json!({"key": k, "n": n}),
                        PublishOptions::new().key(format!("k{k}")),
                    )
                })
                .collect();
            db.enqueue(rows, true).await.expect("committed");
        }
        let (running, stats) = relay(server, &prefix, &db, |o| {
            o.backoff(&[Duration::from_millis(20)])
                .max_attempts(100_000)
        })
        .await;
        let consumer: jetstream::consumer::PullConsumer = js
            .get_stream(&stream)
            .await
            .expect("stream")
            .create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("reader".into()),
                ..Default::default()
            })
            .await
            .expect("reader");
        let mut next: HashMap<u64, u64> = HashMap::new();
        let mut read = 0;
        let mut messages = consumer.messages().await.expect("messages");
        while read < KEYS * PER_KEY {
            let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .expect("a message within 30 s")
                .expect("a message")
                .expect("no error");
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            let (k, n) = (v["key"].as_u64().expect("key"), v["n"].as_u64().expect("n"));
            let want = next.entry(k).or_default();
            assert_eq!(n, *want, "{}: key {k} out of order", db.kind());
            *want += 1;
            read += 1;
            // A slow reader: the queue stays full, and publishes fail.
            if read % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            m.ack().await.expect("ack");
        }
        assert!(stats.retried() > 0, "{}: no publish failed", db.kind());
        // The last rows settle a moment after the stream stored them.
        eventually(Duration::from_secs(10), "every row settled", || async {
            (db.count("pending").await == 0).then_some(())
        })
        .await;
        running.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn nats_down_for_ten_seconds_delays_rows_and_loses_none() {
    let mut server = Server::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    for db in TestDb::both("down").await {
        let prefix = unique_prefix(&format!("down-{}", db.kind()));
        // NATS being away is no refusal: it never uses up a row's
        // attempts, however few are allowed.
        let (running, stats) = relay(&server, &prefix, &db, |o| {
            o.backoff(&[Duration::from_millis(200)]).max_attempts(1)
        })
        .await;
        let streams = running
            .publisher()
            .ensure_streams(&["down.work"])
            .await
            .expect("streams");
        let mut ids = HashSet::new();
        let batch = |from: usize| {
            (from..from + 100)
                .map(|n| row("down.work", json!(n)))
                .collect()
        };
        ids.extend(db.enqueue(batch(0), true).await.expect("committed"));
        server.stop();
        ids.extend(
            db.enqueue(batch(100), true)
                .await
                .expect("committed while NATS is down"),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        server.restart();
        ids.extend(db.enqueue(batch(200), true).await.expect("committed"));
        let stored = eventually(Duration::from_secs(60), "every row stored", || async {
            let m = stream_messages(&client, &streams[0]).await;
            (m.len() >= 300 && db.count("pending").await == 0).then_some(m)
        })
        .await;
        let stored_ids: HashSet<String> = stored
            .iter()
            .filter_map(|m| header(m, "Nats-Msg-Id").map(str::to_owned))
            .collect();
        assert_eq!((stored.len(), &stored_ids), (300, &ids), "{}", db.kind());
        assert_eq!(db.count("failed").await, 0);
        assert!(
            stats.retried() > 0,
            "{}: nothing failed while NATS was down",
            db.kind()
        );
        running.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn bad_input_is_an_error_before_commit() {
    for db in TestDb::both("bad").await {
        let mut headers = HashMap::new();
        headers.insert((1u8, 2u8), 3u8); // not a JSON object key
        let cases: Vec<(Row, &str)> = vec![
            (row("orders.*", json!(1)), "without `*`"),
            (
                (
                    "orders.created".into(),
                    json!(1),
                    PublishOptions::new().header("X:Y", "1"),
                ),
                "header name",
            ),
            (
                (
                    "orders.created".into(),
                    json!(1),
                    PublishOptions::new().header("X", "a\r\nb"),
                ),
                "CR or LF",
            ),
        ];
        for ((subject, payload, options), needle) in cases {
            let err = db
                .enqueue(vec![(subject, payload, options)], true)
                .await
                .expect_err(needle)
                .to_string();
            assert!(err.contains(needle), "{}: {err}", db.kind());
        }
        // A payload that does not serialize, through `outbox::enqueue` itself.
        macro_rules! unserializable {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.expect("begin");
                let err = jetwire_sql::outbox::enqueue(&mut *tx, "orders.created", &headers)
                    .await
                    .expect_err("a map with tuple keys is no JSON")
                    .to_string();
                tx.commit().await.expect("the transaction is still usable");
                err
            }};
        }
        let err = match &db {
            TestDb::Postgres(p, _) => unserializable!(p),
            TestDb::Sqlite(p, ..) => unserializable!(p),
        };
        assert!(err.contains("cannot encode"), "{err}");
        assert_eq!(db.count("pending").await, 0, "{}", db.kind());
    }
}

#[tokio::test]
async fn published_rows_are_kept_when_asked() {
    let server = shared_server();
    for db in TestDb::both("keep").await {
        let prefix = unique_prefix(&format!("keep-{}", db.kind()));
        let (running, stats) = relay(server, &prefix, &db, |o| {
            o.keep_published(Duration::from_secs(3600))
        })
        .await;
        running
            .publisher()
            .ensure_streams(&["kept.rows"])
            .await
            .expect("streams");
        db.enqueue((0..5).map(|n| row("kept.rows", json!(n))).collect(), true)
            .await
            .expect("committed");
        eventually(
            Duration::from_secs(20),
            "5 rows kept as published",
            || async { (db.count("published").await == 5).then_some(()) },
        )
        .await;
        assert_eq!((db.count("pending").await, stats.published()), (0, 5));
        running.shutdown().await.expect("shutdown");
    }
}

/// Kept rows past `keep_published` are removed while a backlog keeps the
/// relay from ever running dry: one row a claim, 3,000 rows waiting.
#[tokio::test]
#[allow(clippy::print_stdout)]
async fn kept_rows_are_removed_under_a_backlog_too() {
    let server = shared_server();
    for db in TestDb::both("keepbusy").await {
        let prefix = unique_prefix(&format!("keepbusy-{}", db.kind()));
        let (running, stats) = relay(server, &prefix, &db, |o| {
            o.keep_published(Duration::from_secs(1)).batch(1)
        })
        .await;
        running
            .publisher()
            .ensure_streams(&["keepbusy.rows"])
            .await
            .expect("streams");
        db.enqueue(
            (0..3000).map(|n| row("keepbusy.rows", json!(n))).collect(),
            true,
        )
        .await
        .expect("committed");
        let (kept, pending) = eventually(
            Duration::from_secs(60),
            "kept rows removed while rows wait",
            || async {
                let published = stats.published();
                let kept = db.count("published").await;
                let pending = db.count("pending").await;
                (published > 0 && (kept as u64) < published && pending > 0)
                    .then_some((kept, pending))
            },
        )
        .await;
        assert!(
            pending > 0 && kept >= 0,
            "{}: the backlog was there",
            db.kind()
        );
        running.shutdown().await.expect("shutdown");
    }
}

/// A row that fails for good holds back the later rows of its key, which
/// keep their order: they go once an operator deals with it (here, by
/// deleting it); rows of other keys and without one are not held.
#[tokio::test]
async fn a_failed_row_holds_back_its_key_until_it_is_dealt_with() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    for db in TestDb::both("held").await {
        let prefix = unique_prefix(&format!("held-{}", db.kind()));
        let (running, stats) = relay(server, &prefix, &db, |o| o).await;
        let streams = running
            .publisher()
            .ensure_streams(&["held.work"])
            .await
            .expect("streams");
        let keyed = |n: u32, key: &str| {
            (
                "held.work".to_owned(),
                json!(n),
                PublishOptions::new().key(key),
            )
        };
        // No stream captures its subject: it fails for good.
        let mut nowhere = keyed(2, "k");
        nowhere.0 = "unstored.work".to_owned();
        db.enqueue(
            vec![
                keyed(1, "k"),
                nowhere,
                keyed(3, "k"),
                keyed(4, "k"),
                keyed(10, "other"),
                row("held.work", json!(20)),
            ],
            true,
        )
        .await
        .expect("committed");
        let payloads = |m: &[jetstream::message::StreamMessage]| -> Vec<u32> {
            m.iter()
                .map(|m| serde_json::from_slice(&m.payload).expect("a number"))
                .collect()
        };
        eventually(
            Duration::from_secs(20),
            "three rows stored, one failed",
            || async {
                let m = stream_messages(&client, &streams[0]).await;
                (m.len() == 3 && db.count("failed").await == 1).then_some(())
            },
        )
        .await;
        // The relay keeps claiming: the held rows stay held.
        let claims = stats.published();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stored = stream_messages(&client, &streams[0]).await;
        let mut seen = payloads(&stored);
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![1, 10, 20],
            "{}: 3 and 4 wait behind 2",
            db.kind()
        );
        assert_eq!(stats.published(), claims);
        assert_eq!(db.count("pending").await, 2);
        // The operator deletes the failed row: its key's rows go, in order.
        assert_eq!(
            db.execute("DELETE FROM {outbox} WHERE status = 'failed'")
                .await,
            1
        );
        let stored = eventually(Duration::from_secs(20), "the held rows stored", || async {
            let m = stream_messages(&client, &streams[0]).await;
            (m.len() == 5).then_some(m)
        })
        .await;
        let k: Vec<u32> = payloads(&stored).into_iter().filter(|n| *n < 10).collect();
        assert_eq!(k, vec![1, 3, 4], "{}", db.kind());
        running.shutdown().await.expect("shutdown");
    }
}

/// A row enqueued in a codec of its own is published with its bytes and
/// its `Content-Type` as they were enqueued.
#[tokio::test]
async fn a_row_in_another_codec_keeps_its_bytes_and_content_type() {
    use jetwire::codec::MsgPack;
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    for db in TestDb::both("codec").await {
        let prefix = unique_prefix(&format!("codec-{}", db.kind()));
        let (running, _) = relay(server, &prefix, &db, |o| o).await;
        let streams = running
            .publisher()
            .ensure_streams(&["outbox.packed"])
            .await
            .expect("streams");
        let packed = jetwire::publish::Message::json(
            "outbox.packed",
            &MsgPack(json!({"n": 1})),
            PublishOptions::new(),
        )
        .expect("a message");
        db.enqueue_messages(vec![packed], true)
            .await
            .expect("committed");
        let stored = eventually(Duration::from_secs(20), "1 stored", || async {
            let m = stream_messages(&client, &streams[0]).await;
            (!m.is_empty()).then_some(m)
        })
        .await;
        assert_eq!(
            header(&stored[0], "Content-Type"),
            Some("application/msgpack"),
            "{}",
            db.kind()
        );
        let payload: serde_json::Value =
            rmp_serde::from_slice(&stored[0].payload).expect("MessagePack");
        assert_eq!(payload, json!({"n": 1}), "{}", db.kind());
        running.shutdown().await.expect("shutdown");
    }
}
