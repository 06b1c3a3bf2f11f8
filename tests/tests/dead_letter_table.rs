//! The dead-letter table on a real PostgreSQL and SQLite file: every
//! letter of a poison run lands once, also when the process writing the
//! table is killed mid-run; and under a name of the project's own, made
//! by the project's own migrations.

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

/// The poisoned handler's app, writing the dead-letter table itself when
/// given one.
async fn app(prefix: &str, table: Option<jetwire_sql::DeadLetterTable>) -> RunningApp {
    let config = Config::builder()
        .url(shared_server().url())
        .app("table")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    let app = App::new(config).only(&["poisoned"]);
    match table {
        Some(table) => app.service(table),
        None => app,
    }
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
        let poison = app(&prefix, None).await;
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

/// A project that already has a `failed_tasks` table (with a column of
/// its own) and keeps its migrations in its own tool: jetwire's scripts
/// run as that tool would, and never its `migrate`; the letters land in
/// `failed_tasks`, and jetwire keeps no migrations table there.
#[tokio::test]
async fn letters_land_in_a_table_of_the_projects_own_name_and_migrations() {
    for db in [
        TestDb::postgres_unmigrated("own").await,
        TestDb::sqlite_unmigrated("own").await,
    ] {
        let outbox = db.tables().outbox();
        let prefix = outbox.trim_end_matches("jetwire_outbox");
        let name = format!("{prefix}failed_tasks");
        let tables = jetwire_sql::Tables::with_prefix(prefix)
            .and_then(|t| t.dead_letters_named(&name))
            .expect("valid names");
        let db = db.with_tables(tables.clone());
        db.run_script(&format!(
            "CREATE TABLE {name} (id TEXT PRIMARY KEY, subject TEXT NOT NULL, reason TEXT, error TEXT, handler TEXT, attempts BIGINT, original_stream TEXT, original_sequence BIGINT, headers TEXT NOT NULL, payload BYTEA NOT NULL, failed_at BIGINT NOT NULL, stored_at BIGINT NOT NULL, team TEXT DEFAULT 'payments')"
        ).replace("BYTEA", if db.kind() == "sqlite" { "BLOB" } else { "BYTEA" }))
        .await;
        for script in tables.migration_sql(&db.pool()) {
            db.run_script(&script).await;
        }
        let stream_prefix = unique_prefix(&format!("own-{}", db.kind()));
        let table = jetwire_sql::DeadLetterTable::new(db.pool()).tables(tables.clone());
        let running = app(&stream_prefix, Some(table)).await;
        for n in 0..3u64 {
            running
                .publisher()
                .publish("tablepoison.created", &n)
                .await
                .expect("publish");
        }
        eventually(
            Duration::from_secs(20),
            "three letters in failed_tasks",
            || async { (db.letter_ids().await.len() == 3).then_some(()) },
        )
        .await;
        running.shutdown().await.expect("shutdown");
        let teams = db.letter_column("team").await;
        assert!(
            teams.iter().all(|t| t.as_deref() == Some("payments")),
            "{teams:?}"
        );
        assert_eq!(
            db.letter_column("reason").await,
            vec![Some("permanent".into()); 3]
        );
        assert!(
            !db.has_table(&tables.schema()).await,
            "{}: jetwire kept migrations of its own",
            db.kind()
        );
        assert!(!db.has_table(&format!("{prefix}jetwire_dead_letters")).await);
    }
}
