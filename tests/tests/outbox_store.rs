//! The outbox's [`Store`]: a store of one's own (kept in memory) relayed
//! like the SQL ones, saving without a caller's transaction, claimed rows
//! visible as `processing`, and a row the stream keeps refusing turning
//! `failed` at `max_attempts`, on a real PostgreSQL, a real SQLite file
//! and a real nats-server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jetwire::async_nats::{self, jetstream};
use jetwire::{PublishOptions, RunningApp};
use jetwire_sql::Outbox;
use jetwire_sql::outbox::{Entry, OutboxStats, Settlement, Store};
use jetwire_tests::memory_store::MemoryStore;
use jetwire_tests::sql::{TestDb, start_relay};
use jetwire_tests::{Server, eventually, shared_server, stream_messages, unique_prefix};
use serde_json::json;

async fn start(server: &Server, prefix: &str, outbox: Outbox) -> (RunningApp, OutboxStats) {
    let outbox = outbox
        .poll_interval(Duration::from_millis(20))
        .backoff(&[Duration::from_millis(20)]);
    start_relay(&server.url(), prefix, outbox).await
}

/// A third store, written against the trait alone, relays every row once,
/// each key in order, and keeps the one row that cannot go as `failed`.
#[tokio::test]
async fn a_store_of_ones_own_relays_like_the_sql_ones() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let prefix = unique_prefix("own-store");
    let store = Arc::new(MemoryStore::new());
    let (running, stats) = start(server, &prefix, Outbox::with_store(store.clone())).await;
    let streams = running
        .publisher()
        .ensure_streams(&["kept.work"])
        .await
        .expect("streams");
    const KEYS: u64 = 4;
    const PER_KEY: u64 = 50;
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            let options = PublishOptions::new().key(format!("k{k}"));
            let entry =
                Entry::json("kept.work", &json!({"k": k, "n": n}), options).expect("an entry");
            store.save(entry).await.expect("saved");
        }
    }
    let lost = Entry::json("unstored.work", &0, PublishOptions::new()).expect("an entry");
    store.save(lost).await.expect("saved");
    let stored = eventually(Duration::from_secs(30), "every row stored", || async {
        let m = stream_messages(&client, &streams[0]).await;
        (m.len() as u64 == KEYS * PER_KEY && stats.failed() == 1).then_some(m)
    })
    .await;
    let mut next: HashMap<u64, u64> = HashMap::new();
    for m in &stored {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
        let (k, n) = (v["k"].as_u64().expect("k"), v["n"].as_u64().expect("n"));
        let want = next.entry(k).or_default();
        assert_eq!(n, *want, "key {k} out of order");
        *want += 1;
    }
    let held = store.held();
    assert_eq!(held.len(), 1, "published rows removed: {held:?}");
    assert_eq!(held[0].status, "failed");
    assert!(
        held[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no stream captures")),
        "{held:?}"
    );
    assert_eq!(stats.published(), KEYS * PER_KEY);
    running.shutdown().await.expect("shutdown");
}

/// A row the stream refuses (a full stream that discards new messages)
/// is tried `max_attempts` times, then turns `failed` with the refusal
/// kept as its error.
#[tokio::test]
async fn a_row_refused_max_attempts_times_turns_failed() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    for db in TestDb::both("refused").await {
        let prefix = unique_prefix(&format!("refused-{}", db.kind()));
        let stream = format!("{}_FULL", prefix.to_uppercase().replace(['.', '-'], "_"));
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.full.>")],
            max_messages: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("a stream of one message");
        js.publish(format!("{prefix}.full.first"), "1".into())
            .await
            .expect("sent")
            .await
            .expect("stored: the stream is full");
        db.enqueue(
            vec![("full.x".into(), json!(2), PublishOptions::new())],
            true,
        )
        .await
        .expect("committed");
        let outbox = Outbox::new(db.pool())
            .tables(db.tables().clone())
            .max_attempts(3);
        let (running, stats) = start(server, &prefix, outbox).await;
        let failures = eventually(Duration::from_secs(20), "the row failed", || async {
            let f = db.failures().await;
            (f.len() == 1).then_some(f)
        })
        .await;
        assert_eq!((stats.retried(), stats.failed()), (2, 1), "{}", db.kind());
        let attempts = db
            .execute(
                "UPDATE {outbox} SET status = 'failed' WHERE status = 'failed' AND attempts = 3",
            )
            .await;
        assert_eq!(attempts, 1, "{}: three attempts counted", db.kind());
        assert!(failures[0].contains("maximum messages"), "{failures:?}");
        assert_eq!(stream_messages(&client, &stream).await.len(), 1);
        running.shutdown().await.expect("shutdown");
    }
}

/// `enqueue` on a connection outside any transaction, and
/// `SqlStore::save`, commit at once: another connection sees the rows.
#[tokio::test]
async fn saving_without_a_transaction_commits_at_once() {
    for db in TestDb::both("no-tx").await {
        let store = db.store();
        let entry = Entry::json("plain.saved", &1, PublishOptions::new()).expect("an entry");
        store.save(entry).await.expect("saved");
        macro_rules! plain {
            ($pool:expr) => {{
                let mut conn = $pool.acquire().await.expect("a connection");
                db.tables()
                    .enqueue(&mut *conn, "plain.enqueued", &2)
                    .await
                    .expect("enqueued")
            }};
        }
        let id = match &db {
            TestDb::Postgres(p, ..) => plain!(p),
            TestDb::Sqlite(p, ..) => plain!(p),
        };
        assert!(!id.is_empty());
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.pending, counts.processing), (2, 0), "{}", db.kind());
        assert_eq!(db.count("pending").await, 2);
    }
}

/// A claimed row is `processing` for any reader until it is settled;
/// another claim meanwhile takes only the rows no lease holds.
#[tokio::test]
async fn a_claimed_row_is_processing_until_settled() {
    for db in TestDb::both("processing").await {
        let store = db.store();
        for n in 0..3 {
            let entry = Entry::json("work.x", &n, PublishOptions::new()).expect("an entry");
            store.save(entry).await.expect("saved");
        }
        let lease = Duration::from_secs(60);
        let first = store.claim(lease, 2).await.expect("claim");
        assert_eq!(first.rows().len(), 2, "{}", db.kind());
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.pending, counts.processing), (1, 2), "{}", db.kind());
        let second = store.claim(lease, 10).await.expect("claim");
        assert_eq!(
            second.rows().len(),
            1,
            "{}: only the unclaimed row",
            db.kind()
        );
        assert!(
            store
                .claim(lease, 10)
                .await
                .expect("claim")
                .rows()
                .is_empty()
        );
        assert_eq!(store.counts().await.expect("counts").processing, 3);
        drop(second); // a relay that died: its row stays processing until the lease lapses
        let seqs: Vec<i64> = first.rows().iter().map(|r| r.seq()).collect();
        let settled = Settlement::new(seqs, false, Vec::new());
        store.settle(first, &settled).await.expect("settled");
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.pending, counts.processing), (0, 1), "{}", db.kind());
        assert_eq!(
            db.count("pending").await,
            1,
            "{}: still `pending` in the table",
            db.kind()
        );
    }
}
