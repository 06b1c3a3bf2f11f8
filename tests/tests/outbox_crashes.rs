//! The relay in a process of its own, on PostgreSQL and on SQLite: killed
//! with SIGKILL at random points, five times, while writers commit 20,000
//! rows, every committed row ends in the stream exactly once, and none is
//! left pending (what was lost, sent again and stored twice is counted, and
//! printed); with its clock ten minutes off, it publishes at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

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

fn relay(prefix: &str, db: &TestDb) -> WorkerProcess {
    relay_with(prefix, db, &[])
}

fn relay_with(prefix: &str, db: &TestDb, env: &[(&str, &str)]) -> WorkerProcess {
    let target = db.target();
    let tables = db.tables().outbox();
    let tables = tables.trim_end_matches("jetwire_outbox").to_owned();
    WorkerProcess::ready(
        env!("CARGO_BIN_EXE_jetwire-outbox-relay"),
        &shared_server().url(),
        prefix,
        "relay",
        &[
            &[
                ("OUTBOX_DB", target.as_str()),
                ("OUTBOX_TABLES", tables.as_str()),
            ],
            env,
        ]
        .concat(),
    )
}

/// Every id published on `subject` by whoever, as plain NATS sees it:
/// sends the stream dropped as duplicates are counted too.
async fn sends(client: &async_nats::Client, subject: String) -> Arc<Mutex<HashMap<String, usize>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut sub = client.subscribe(subject).await.expect("subscribe");
    client.flush().await.expect("flush");
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            *counts.lock().expect("counts").entry(id).or_insert(0) += 1;
        }
    });
    seen
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
        let sent = sends(&client, format!("{prefix}.crash.rows")).await;
        let db = Arc::new(db);
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
        let mut process = relay(&prefix, &db);
        for _ in 0..KILLS {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
            process.kill9();
            process = relay(&prefix, &db);
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
        // Only rows in flight when a relay died may go again: at most a
        // batch (200) a kill. More means settled rows were sent again,
        // which the stream's duplicate window would hide.
        let resent = eventually(Duration::from_secs(30), "every send seen", || async {
            let sent = sent.lock().expect("sends");
            committed
                .iter()
                .all(|id| sent.contains_key(id))
                .then(|| sent.values().map(|n| n - 1).sum::<usize>())
        })
        .await;
        let unknown = seen.keys().filter(|id| !committed.contains(*id)).count();
        println!(
            "{}: {} committed, {} stored, {lost} lost, {resent} sent again, {twice} stored twice, {unknown} not committed, {} pending, {KILLS} kills",
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
        assert!(
            resent <= KILLS * 200,
            "{}: {resent} rows sent again after {KILLS} kills of a relay that claims 200 at a time",
            db.kind()
        );
    }
}

/// A relay whose clock is ten minutes behind the writers' (libfaketime in
/// its process) publishes their rows at once: when a row is due is the
/// database server's clock, not the relay's or a writer's. (SQLite has no
/// server: its clock is the host's, which every process on it shares.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn a_relay_whose_clock_is_ten_minutes_behind_publishes_rows_at_once() {
    let faketime = jetwire_tests::faketime_library().display().to_string();
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    {
        let db = TestDb::postgres("skew").await;
        let prefix = unique_prefix("skew");
        let cfg = jetwire_tests::config(shared_server(), &prefix, "skew");
        let publisher = jetwire::Publisher::connect(&cfg).await.expect("connect");
        let stream = publisher
            .ensure_streams(&["skew.rows"])
            .await
            .expect("streams")[0]
            .clone();
        let skewed = [
            ("LD_PRELOAD", faketime.as_str()),
            ("FAKETIME", "-10m"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ];
        let process = relay_with(&prefix, &db, &skewed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let clock: u128 = process
            .expect_line(|l| l.starts_with("CLOCK "))
            .trim_start_matches("CLOCK ")
            .parse()
            .expect("the relay prints its clock");
        assert!(
            now.saturating_sub(clock) >= 9 * 60 * 1000,
            "the relay's clock is ten minutes behind: {clock} against {now}"
        );
        let rows = (0..20)
            .map(|n| {
                (
                    "skew.rows".to_owned(),
                    json!({"n": n}),
                    PublishOptions::new(),
                )
            })
            .collect();
        let committed = Instant::now();
        db.enqueue(rows, true).await.expect("committed");
        eventually(Duration::from_secs(60), "the rows stored", || async {
            (stream_messages(&client, &stream).await.len() == 20).then_some(())
        })
        .await;
        println!(
            "{}: 20 rows stored {:?} after commit by a relay 10 min behind",
            db.kind(),
            committed.elapsed()
        );
        drop(process);
    }
}
