//! The dead-letter table on a real PostgreSQL and SQLite file: every
//! letter of a poison run lands once, also when the app writing the table
//! dies mid-run.

use std::collections::HashSet;
use std::time::Duration;

use jetwire::async_nats;
use jetwire::{App, Config, HandlerError, RunningApp, subscribe};
use jetwire_sql::DeadLetterTable;
use jetwire_tests::sql::TestDb;
use jetwire_tests::{eventually, header, shared_server, stream_messages, unique_prefix};

#[subscribe("tablepoison.created", max_deliver = 1)]
async fn poisoned(n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent(format!("poison {n}")))
}

async fn app(prefix: &str, db: &TestDb) -> RunningApp {
    let config = Config::builder()
        .url(shared_server().url())
        .app("table")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    App::new(config)
        .only(&["poisoned"])
        .service(
            DeadLetterTable::new(db.pool())
                .tables(db.tables().clone())
                .ack_wait(Duration::from_secs(1)),
        )
        .start()
        .await
        .expect("the app starts")
}

#[tokio::test]
async fn every_letter_lands_once_even_when_the_writer_dies_mid_run() {
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    for db in TestDb::both("letters").await {
        let prefix = unique_prefix(&format!("letters-{}", db.kind()));
        let first = app(&prefix, &db).await;
        let publisher = first.publisher();
        const LETTERS: usize = 400;
        for n in 0..LETTERS as u64 {
            publisher
                .publish("tablepoison.created", &n)
                .await
                .expect("publish");
        }
        // Dies with letters read and not yet acked (dropping stops at once).
        eventually(
            Duration::from_secs(20),
            "some letters in the table",
            || async { (db.letter_ids().await.len() >= 50).then_some(()) },
        )
        .await;
        drop(first);
        let second = app(&prefix, &db).await;
        let dlq = jetwire::topology::dlq_stream(Some(&prefix));
        let ids = eventually(
            Duration::from_secs(30),
            "every letter in the table",
            || async {
                let ids = db.letter_ids().await;
                (ids.len() >= LETTERS).then_some(ids)
            },
        )
        .await;
        let letters = stream_messages(&client, &dlq).await;
        let want: HashSet<String> = letters
            .iter()
            .filter_map(|m| header(m, "Nats-Msg-Id").map(str::to_owned))
            .collect();
        let got: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), LETTERS, "{}: a letter stored twice", db.kind());
        assert_eq!(letters.len(), LETTERS);
        assert_eq!(got, want, "{}", db.kind());
        for (column, value) in [
            ("subject", "tablepoison.created"),
            ("reason", "permanent"),
            ("handler", "poisoned"),
            (
                "original_stream",
                &jetwire::topology::default_stream(Some(&prefix), "tablepoison.created"),
            ),
        ] {
            let values = db.letter_column(column).await;
            assert!(
                values.iter().all(|v| v.as_deref() == Some(value)),
                "{}: {column} is not {value} everywhere: {:?}",
                db.kind(),
                &values[..3]
            );
        }
        second.shutdown().await.expect("shutdown");
    }
}
