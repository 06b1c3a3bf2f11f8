//! The relay killed with SIGKILL at random points, five times, while
//! writers commit 20,000 rows, on PostgreSQL and on SQLite: every
//! committed row ends in the stream exactly once, and none is left
//! pending. What was lost and what was stored twice are counted, and
//! printed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jetwire::PublishOptions;
use jetwire::async_nats;
use jetwire_tests::sql::TestDb;
use jetwire_tests::{
    WorkerProcess, eventually, header, shared_server, stream_messages, unique_prefix,
};
use serde_json::json;

const ROWS: usize = 20_000;
const WRITERS: usize = 4;
const KILLS: usize = 5;

/// A small deterministic generator: the kill points differ per run, and a
/// failing run prints its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn relay(prefix: &str, db: &TestDb, url: &str) -> WorkerProcess {
    let target = match db.sqlite_file() {
        Some(file) => file.display().to_string(),
        None => url.to_owned(),
    };
    let tables = db.tables().outbox();
    let tables = tables.trim_end_matches("jetwire_outbox").to_owned();
    WorkerProcess::ready(
        env!("CARGO_BIN_EXE_jetwire-outbox-relay"),
        &shared_server().url(),
        prefix,
        "relay",
        &[("OUTBOX_DB", &target), ("OUTBOX_TABLES", &tables)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn a_relay_killed_five_times_loses_nothing_and_stores_nothing_twice() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let url = jetwire_tests::postgres_sqlx_url();
    for db in TestDb::both("crash").await {
        let prefix = unique_prefix(&format!("crash-{}", db.kind()));
        let cfg = jetwire::Config::builder()
            .url(shared_server().url())
            .subject_prefix(&prefix)
            .app("crash")
            .build()
            .expect("valid");
        let publisher = jetwire::Publisher::connect(&cfg).await.expect("connect");
        let stream = publisher
            .ensure_streams(&["crash.rows"])
            .await
            .expect("streams")[0]
            .clone();
        let db = std::sync::Arc::new(db);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for chunk in 0..ROWS / WRITERS / 50 {
                        let rows = (0..50)
                            .map(|n| {
                                (
                                    "crash.rows".to_owned(),
                                    json!({"w": w, "n": chunk * 50 + n}),
                                    PublishOptions::new(),
                                )
                            })
                            .collect();
                        ids.extend(db.enqueue(rows, true).await.expect("committed"));
                    }
                    ids
                })
            })
            .collect();
        let mut process = relay(&prefix, &db, &url);
        for _ in 0..KILLS {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
            process.kill9();
            process = relay(&prefix, &db, &url);
        }
        let mut committed = HashSet::new();
        for w in writers {
            committed.extend(w.await.expect("writer"));
        }
        let stored = eventually(
            Duration::from_secs(120),
            "every committed row stored",
            || async {
                let m = stream_messages(&client, &stream).await;
                (m.len() >= ROWS && db.count("pending").await == 0).then_some(m)
            },
        )
        .await;
        drop(process);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for m in &stored {
            *seen
                .entry(header(m, "Nats-Msg-Id").unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        let lost = committed
            .iter()
            .filter(|id| !seen.contains_key(*id))
            .count();
        let twice = seen.values().filter(|n| **n > 1).count();
        let unknown = seen.keys().filter(|id| !committed.contains(*id)).count();
        println!(
            "{}: {} committed, {} stored, {lost} lost, {twice} stored twice, {unknown} not committed, {} pending, {KILLS} kills",
            db.kind(),
            committed.len(),
            stored.len(),
            db.count("pending").await
        );
        assert_eq!(committed.len(), ROWS);
        assert_eq!(
            (lost, twice, unknown),
            (0, 0, 0),
            "{}: seed {seed}",
            db.kind()
        );
        assert_eq!(db.count("pending").await, 0);
    }
}
