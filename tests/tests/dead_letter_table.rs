//! The dead-letter table on a real PostgreSQL and SQLite file: every
//! letter of a poison run lands once, also when the process writing the
//! table is killed mid-run.

use std::collections::HashSet;
use std::time::Duration;

use jetwire::async_nats;
use jetwire::{App, Config, HandlerError, RunningApp, subscribe};
use jetwire_tests::sql::TestDb;
use jetwire_tests::{
    WorkerProcess, eventually, header, shared_server, stream_messages, unique_prefix,
};

#[subscribe("tablepoison.created", max_deliver = 1)]
async fn poisoned(n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent(format!("poison {n}")))
}

async fn app(prefix: &str) -> RunningApp {
    let config = Config::builder()
        .url(shared_server().url())
        .app("table")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    App::new(config)
        .only(&["poisoned"])
        .start()
        .await
        .expect("the app starts")
}

/// The dead-letter table written by a process of its own.
fn writer(prefix: &str, db: &TestDb) -> WorkerProcess {
    let tables = db.tables().outbox();
    let tables = tables.trim_end_matches("jetwire_outbox").to_owned();
    WorkerProcess::ready(
        env!("CARGO_BIN_EXE_jetwire-outbox-relay"),
        &shared_server().url(),
        prefix,
        "letters",
        &[
            ("OUTBOX_DB", db.target().as_str()),
            ("OUTBOX_TABLES", tables.as_str()),
            ("OUTBOX_SERVICE", "dead-letter-table"),
        ],
    )
}

/// The writer is SIGKILLed mid-run (each insert slowed to about 10 ms),
/// with letters read and not yet acked; its successor gets them again:
/// each is taken once. Rows offered to the table (a committed letter
/// delivered again is offered twice) and taken are counted by triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn every_letter_lands_once_even_when_the_writer_is_killed_mid_run() {
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    for db in TestDb::both("letters").await {
        let prefix = unique_prefix(&format!("letters-{}", db.kind()));
        let letters_table = db.tables().dead_letters();
        db.count_inserts(&letters_table).await;
        db.slow_inserts(&letters_table).await;
        let poison = app(&prefix).await;
        let first = writer(&prefix, &db);
        let publisher = poison.publisher();
        const LETTERS: usize = 400;
        for n in 0..LETTERS as u64 {
            // Every payload at version 3: the table keeps it.
            publisher
                .publish_with(
                    "tablepoison.created",
                    &n,
                    jetwire::PublishOptions::new().version("3"),
                )
                .await
                .expect("publish");
        }
        let at_kill = eventually(
            Duration::from_secs(20),
            "some letters in the table",
            || async {
                let n = db.letter_ids().await.len();
                (n >= 50).then_some(n)
            },
        )
        .await;
        first.kill9();
        let second = writer(&prefix, &db);
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
        let (offered, taken) = db.inserts(&letters_table).await;
        println!(
            "{}: {LETTERS} letters, {at_kill} stored when the writer was killed; {offered} offered to the table, {taken} taken, {} rows",
            db.kind(),
            ids.len()
        );
        assert!(at_kill < LETTERS, "the writer was killed mid-run");
        assert_eq!(
            taken,
            LETTERS as i64,
            "{}: a letter stored twice",
            db.kind()
        );
        let letters = stream_messages(&client, &dlq).await;
        let want: HashSet<String> = letters
            .iter()
            .filter_map(|m| header(m, "Nats-Msg-Id").map(str::to_owned))
            .collect();
        let got: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            taken,
            LETTERS as i64,
            "{}: a letter stored twice",
            db.kind()
        );
        assert_eq!(ids.len(), LETTERS);
        assert_eq!(letters.len(), LETTERS);
        assert_eq!(got, want, "{}", db.kind());
        for (column, value) in [
            ("subject", "tablepoison.created"),
            ("reason", "permanent"),
            ("handler", "poisoned"),
            ("version", "3"),
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
        drop(second);
        poison.shutdown().await.expect("shutdown");
    }
}
