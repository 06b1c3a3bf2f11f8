//! The outbox relay's routing rules against a real nats-server: rows that
//! cannot go, header, destination and whole-row rules in their order, the
//! fallback, the relay's route by subject, and a row no rule matches
//! waiting with its reason instead of going to the app's connection.

use std::time::Duration;

use jetwire::async_nats;
use jetwire::{App, PublishOptions, Publisher, RunningApp};
use jetwire_sql::Outbox;
use jetwire_sql::outbox::{OutboxStats, Router, Row};
use jetwire_tests::sql::{TestDb, relay_config, start_relay};
use jetwire_tests::{Server, eventually, shared_server, stream_messages, unique_prefix};
use serde_json::json;

/// A publisher under its own prefix, and the stream of `routed.x` there.
async fn target(server: &Server, prefix: &str) -> (Publisher, String) {
    let publisher = Publisher::connect(&relay_config(&server.url(), prefix))
        .await
        .expect("a publisher");
    let streams = publisher
        .ensure_streams(&["routed.x"])
        .await
        .expect("its stream");
    (publisher, streams[0].clone())
}

async fn relay(
    server: &Server,
    prefix: &str,
    db: &TestDb,
    tune: impl FnOnce(Outbox) -> Outbox,
) -> (RunningApp, OutboxStats) {
    let outbox = tune(
        Outbox::new(db.pool())
            .tables(db.tables().clone())
            .poll_interval(Duration::from_millis(20))
            .backoff(&[Duration::from_millis(20)]),
    );
    start_relay(&server.url(), prefix, outbox).await
}

/// The payloads stored in `stream`, once it holds `n`, sorted.
async fn payloads(client: &async_nats::Client, stream: &str, n: usize) -> Vec<u64> {
    let mut got: Vec<u64> = eventually(Duration::from_secs(20), stream, || async {
        let m = stream_messages(client, stream).await;
        (m.len() >= n).then_some(m)
    })
    .await
    .iter()
    .map(|m| serde_json::from_slice(&m.payload).expect("a number"))
    .collect();
    got.sort_unstable();
    got
}

/// A subject no stream captures fails its row; a destination no
/// publisher serves keeps its row waiting until a relay that has one runs;
/// rows that name a served destination go there, the header taken off.
#[tokio::test]
async fn rows_that_cannot_go_fail_with_their_reason_and_others_route() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    for db in TestDb::both("fail").await {
        let prefix = unique_prefix(&format!("fail-{}", db.kind()));
        let other_prefix = format!("{prefix}-other");
        let other = Publisher::connect(&relay_config(&server.url(), &other_prefix))
            .await
            .expect("the other publisher");
        let other_streams = other
            .ensure_streams(&["routed.here"])
            .await
            .expect("streams");
        let (running, stats) = relay(server, &prefix, &db, |o| {
            o.destination("other", other.clone())
        })
        .await;
        let dest = |name: &str| PublishOptions::new().header("Jetwire-Destination", name);
        db.enqueue(
            vec![
                ("nostream.anywhere".into(), json!(1), PublishOptions::new()),
                ("routed.here".into(), json!(2), dest("nowhere")),
                ("routed.here".into(), json!(3), dest("other")),
                // Header names are compared without case, as NATS does.
                (
                    "routed.here".into(),
                    json!(4),
                    PublishOptions::new().header("jetwire-destination", "other"),
                ),
            ],
            true,
        )
        .await
        .expect("committed");
        let failures = eventually(Duration::from_secs(20), "a row failed", || async {
            let f = db.failures().await;
            (f.len() == 1).then_some(f)
        })
        .await;
        assert!(failures[0].contains("no stream captures"), "{failures:?}");
        // A destination no publisher serves is not a reason to give up:
        // the row waits, with the reason, and is tried again.
        let waiting = eventually(Duration::from_secs(20), "the row waits", || async {
            let w = db.errors("pending").await;
            (stats.retried() >= 3).then_some(w)
        })
        .await;
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(
            waiting[0].contains("no publisher for destination `nowhere`"),
            "{waiting:?}"
        );
        let routed = eventually(Duration::from_secs(20), "two rows routed", || async {
            let m = stream_messages(&client, &other_streams[0]).await;
            (m.len() == 2).then_some(m)
        })
        .await;
        for m in &routed {
            assert!(
                m.headers
                    .iter()
                    .all(|(n, _)| !n.to_string().eq_ignore_ascii_case("jetwire-destination")),
                "routing header removed"
            );
        }
        assert_eq!((stats.published(), stats.failed()), (2, 1));
        running.shutdown().await.expect("shutdown");
        // A relay that has the publisher sends the row that waited.
        let (running, _) = relay(server, &prefix, &db, |o| {
            o.destination("nowhere", other.clone())
        })
        .await;
        eventually(
            Duration::from_secs(20),
            "the waiting row routed",
            || async {
                let stored = stream_messages(&client, &other_streams[0]).await.len();
                // Settled after the stream stored it: the row goes a moment later.
                (stored == 3 && db.count("pending").await == 0).then_some(())
            },
        )
        .await;
        running.shutdown().await.expect("shutdown");
    }
}

/// Rules go in the order they were added, and the first that matches
/// wins: a row with both a matching header and a destination goes by the
/// header, a row only the whole-row rule matches goes where it says, and
/// the rest go to the fallback, never to the app's own connection.
#[tokio::test]
async fn rules_go_in_order_and_the_first_match_wins() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let db = TestDb::sqlite("rules").await;
    let prefix = unique_prefix("rules");
    let (eu, eu_stream) = target(server, &format!("{prefix}-eu")).await;
    let (billing, billing_stream) = target(server, &format!("{prefix}-billing")).await;
    let (rest, rest_stream) = target(server, &format!("{prefix}-rest")).await;
    let router = Router::new()
        .header("region", [("eu", eu)])
        .destination([("billing", billing)])
        .route(|row: &Row| {
            let vip = row.key().is_some_and(|k| k.starts_with("vip-"));
            (vip && row.subject() == "routed.x" && row.header("tier") == Some("gold"))
                .then_some("billing")
        })
        .fallback(rest);
    let (running, stats) = relay(server, &prefix, &db, |o| o.router(router)).await;
    let own = running
        .publisher()
        .ensure_streams(&["routed.x"])
        .await
        .expect("the app's stream");
    let at = |n: u64, options: PublishOptions| ("routed.x".to_owned(), json!(n), options);
    let o = PublishOptions::new;
    db.enqueue(
        vec![
            // Header first, though it names a destination too.
            at(
                1,
                o().header("Region", "eu")
                    .header("Jetwire-Destination", "billing"),
            ),
            at(2, o().header("Jetwire-Destination", "billing")),
            // The whole row: key, subject and header all count.
            at(
                3,
                o().key("vip-1")
                    .header("tier", "gold")
                    .header("region", "us"),
            ),
            at(4, o().key("vip-2").header("tier", "silver")),
            at(5, o()),
            at(6, o().header("REGION", "eu")),
        ],
        true,
    )
    .await
    .expect("committed");
    assert_eq!(payloads(&client, &eu_stream, 2).await, vec![1, 6]);
    assert_eq!(payloads(&client, &billing_stream, 2).await, vec![2, 3]);
    assert_eq!(payloads(&client, &rest_stream, 2).await, vec![4, 5]);
    assert!(stream_messages(&client, &own[0]).await.is_empty());
    assert_eq!((stats.published(), stats.failed()), (6, 0));
    running.shutdown().await.expect("shutdown");
}

/// With no rule matching and no fallback, a row is not published on the
/// app's connection and not given up, however often it is tried: it
/// waits, with the reason, until a relay whose router sends it runs.
#[tokio::test]
async fn a_row_no_rule_matches_waits_with_the_reason() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    for db in TestDb::both("waits").await {
        let prefix = unique_prefix(&format!("waits-{}", db.kind()));
        let (eu, eu_stream) = target(server, &format!("{prefix}-eu")).await;
        let router = Router::new().header("region", [("eu", eu.clone())]);
        let (running, stats) =
            relay(server, &prefix, &db, |o| o.router(router).max_attempts(1)).await;
        let own = running
            .publisher()
            .ensure_streams(&["routed.x"])
            .await
            .expect("the app's stream");
        let options = PublishOptions::new().header("region", "us");
        db.enqueue(vec![("routed.x".into(), json!(7), options)], true)
            .await
            .expect("committed");
        eventually(Duration::from_secs(20), "tried thrice", || async {
            (stats.retried() >= 3).then_some(())
        })
        .await;
        let waiting = db.errors("pending").await;
        assert_eq!(waiting.len(), 1, "{}: {waiting:?}", db.kind());
        assert!(
            waiting[0].contains("no routing rule matches"),
            "{waiting:?}"
        );
        assert_eq!((db.count("failed").await, stats.failed()), (0, 0));
        assert!(stream_messages(&client, &own[0]).await.is_empty());
        assert!(stream_messages(&client, &eu_stream).await.is_empty());
        running.shutdown().await.expect("shutdown");
        // A relay whose router has a fallback sends it, to the app.
        let (running, _) = relay(server, &prefix, &db, |o| {
            o.router(
                Router::new()
                    .header("region", [("eu", eu)])
                    .fallback_to_app(),
            )
        })
        .await;
        assert_eq!(payloads(&client, &own[0], 1).await, vec![7]);
        // Settled after the stream stored it: the row goes a moment later.
        eventually(Duration::from_secs(10), "the row settled", || async {
            (db.count("pending").await == 0).then_some(())
        })
        .await;
        running.shutdown().await.expect("shutdown");
    }
}

/// A relay without a router routes as it always did: a named destination
/// through its publisher, a subject its `route` names through that
/// publisher, every other row through the app's own connection.
#[tokio::test]
async fn a_relay_without_a_router_routes_by_destination_then_subject() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let db = TestDb::sqlite("by-subject").await;
    let prefix = unique_prefix("by-subject");
    let (audit, audit_stream) = target(server, &format!("{prefix}-audit")).await;
    let (billing, billing_stream) = target(server, &format!("{prefix}-billing")).await;
    let (running, _) = relay(server, &prefix, &db, |o| {
        o.destination("audit", audit)
            .destination("billing", billing)
            .route(|subject| subject.ends_with(".x").then(|| "audit".to_owned()))
    })
    .await;
    let streams = running
        .publisher()
        .ensure_streams(&["routed.y"])
        .await
        .expect("the app's stream (of `routed.x` as well)");
    let dest = PublishOptions::new().header("Jetwire-Destination", "billing");
    db.enqueue(
        vec![
            ("routed.x".into(), json!(1), PublishOptions::new()),
            ("routed.x".into(), json!(2), dest),
            ("routed.y".into(), json!(3), PublishOptions::new()),
        ],
        true,
    )
    .await
    .expect("committed");
    assert_eq!(payloads(&client, &audit_stream, 1).await, vec![1]);
    assert_eq!(payloads(&client, &billing_stream, 1).await, vec![2]);
    assert_eq!(payloads(&client, &streams[0], 1).await, vec![3]);
    assert_eq!(stream_messages(&client, &streams[0]).await.len(), 1);
    running.shutdown().await.expect("shutdown");
}

/// A route beside a router, or table names beside a store of one's own,
/// stops the app as it starts, naming what to write instead.
#[tokio::test]
async fn conflicting_settings_stop_the_app_naming_the_fix() {
    let server = shared_server();
    let db = TestDb::sqlite("conflict").await;
    let prefix = unique_prefix("conflict");
    let both = Outbox::new(db.pool())
        .router(Router::new().fallback_to_app())
        .route(|_| None);
    let own = Outbox::with_store(jetwire_tests::memory_store::MemoryStore::new())
        .tables(db.tables().clone());
    for (outbox, needle) in [(both, "Router::route"), (own, "remove Outbox::tables")] {
        let run = App::new(relay_config(&server.url(), &prefix))
            .only(&[])
            .service(outbox)
            .run();
        let result = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("run returns, not hangs");
        let err = result.expect_err(needle).to_string();
        assert!(err.contains(needle), "{err}");
    }
}
