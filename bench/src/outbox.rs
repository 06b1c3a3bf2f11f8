//! The outbox relay against a hand-written relay loop doing the same work
//! on the same PostgreSQL and nats-server: claim a batch with
//! `FOR UPDATE SKIP LOCKED`, publish it pipelined with the stored headers,
//! wait for every ack, delete the rows. Also the relay's rows/s on SQLite,
//! and commit-to-stored latency at 1,000 rows/s woken by LISTEN/NOTIFY.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jetwire::publish::Message;
use jetwire::{App, PublishOptions};
use jetwire_sql::{Outbox, Pool, Tables};
use sqlx::Row as _;

use crate::setup::{config, fresh_prefix, server};

/// Rows a relay publishes per claim, on both sides.
const BATCH: i64 = 500;

async fn postgres() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&jetwire_tests::postgres_url())
        .await
        .expect("the bench's PostgreSQL")
}

/// A fresh subject prefix for one run, with the stream capturing `subject`.
pub(crate) async fn with_stream(name: &str, subject: &str) -> String {
    let prefix = fresh_prefix(name);
    jetwire::Publisher::connect(&config(&prefix))
        .await
        .expect("connect")
        .ensure_streams(&[subject])
        .await
        .expect("stream");
    prefix
}

/// Fresh tables and a stream for one run; the rows enqueued, `n` of them.
async fn loaded(pool: Pool, n: usize, name: &str) -> (String, Tables) {
    let prefix = with_stream(name, "obench.rows").await;
    let tables = Tables::with_prefix(format!("{prefix}_")).expect("a valid prefix");
    tables.migrate(&pool).await.expect("migrate");
    let payload =
        serde_json::json!({"order_id": 42, "email": "someone@example.com", "total_cents": 1999});
    for chunk in 0..n.div_ceil(1000) {
        let rows = (0..1000.min(n - chunk * 1000))
            .map(|_| Message::json("obench.rows", &payload, PublishOptions::new()).expect("valid"));
        macro_rules! insert {
            ($p:expr) => {{
                let mut tx = $p.begin().await.expect("begin");
                for m in rows {
                    tables.enqueue_message(&mut *tx, m).await.expect("enqueue");
                }
                tx.commit().await.expect("commit");
            }};
        }
        match &pool {
            Pool::Postgres(p) => insert!(p),
            Pool::Sqlite(p) => insert!(p),
            _ => unreachable!("both databases are enabled"),
        }
    }
    (prefix, tables)
}

/// jetwire's relay: rows per second from its start until JetStream has
/// stored every row (counted on a subscription: no polling of either side).
pub(crate) async fn jetwire_relay(pool: Pool, n: usize) -> f64 {
    let (prefix, tables) = loaded(pool.clone(), n, "jetwire").await;
    let client = async_nats::connect(server().url()).await.expect("connect");
    let mut sub = client
        .subscribe(format!("{prefix}.obench.rows"))
        .await
        .expect("sub");
    client.flush().await.expect("flush");
    let app = App::new(config(&prefix))
        .only(&[])
        .service(
            Outbox::new(pool.clone())
                .tables(tables.clone())
                .batch(BATCH as u32)
                .poll_interval(Duration::from_millis(5)),
        )
        .start()
        .await
        .expect("relay");
    // The relay runs on this (current-thread) runtime: it starts now.
    let t0 = Instant::now();
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a row within 30 s")
            .expect("message");
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    app.shutdown().await.expect("shutdown");
    wait_empty(&pool, &tables).await;
    rate
}

/// A careful hand-written relay: the same claim, publish and delete.
pub(crate) async fn raw_relay(n: usize) -> f64 {
    let pg = postgres().await;
    let (prefix, tables) = loaded(pg.clone().into(), n, "raw").await;
    let client = async_nats::connect(server().url()).await.expect("connect");
    let mut sub = client
        .subscribe(format!("{prefix}.obench.rows"))
        .await
        .expect("sub");
    client.flush().await.expect("flush");
    let js = async_nats::jetstream::new(client);
    let table = tables.outbox();
    let claim = format!(
        "SELECT seq, subject, headers, payload FROM {table} WHERE status = 'pending'
         ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
    );
    let delete = format!("DELETE FROM {table} WHERE seq = ANY($1)");
    let t0 = Instant::now();
    // Measured as jetwire's is: until a subscription has seen every row.
    let counted = tokio::spawn(async move {
        for _ in 0..n {
            sub.next().await.expect("message");
        }
        t0.elapsed()
    });
    loop {
        let mut tx = pg.begin().await.expect("begin");
        let rows = sqlx::query(&claim)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await
            .expect("claim");
        if rows.is_empty() {
            break;
        }
        let mut acks = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        for r in &rows {
            seqs.push(r.get::<i64, _>("seq"));
            let pairs: Vec<(String, String)> =
                serde_json::from_str(r.get::<&str, _>("headers")).expect("headers");
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in &pairs {
                headers.append(k.as_str(), v.as_str());
            }
            let subject = format!("{prefix}.{}", r.get::<&str, _>("subject"));
            let payload: Vec<u8> = r.get("payload");
            acks.push(
                js.publish_with_headers(subject, headers, payload.into())
                    .await
                    .expect("publish"),
            );
        }
        let acks = acks.into_iter().map(std::future::IntoFuture::into_future);
        for ack in futures_util::future::join_all(acks).await {
            ack.expect("stored");
        }
        sqlx::query(&delete)
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .expect("delete");
        tx.commit().await.expect("commit");
    }
    n as f64 / counted.await.expect("counted").as_secs_f64()
}

async fn wait_empty(pool: &Pool, tables: &Tables) {
    let sql = format!("SELECT COUNT(*) FROM {}", tables.outbox());
    loop {
        let left: i64 = match pool {
            Pool::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
            Pool::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
            _ => unreachable!("both databases are enabled"),
        }
        .expect("count");
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The relay on a SQLite file: rows per second.
pub(crate) async fn sqlite_relay(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("bench.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("sqlite");
    jetwire_relay(pool.into(), n).await
}

/// The relay on PostgreSQL.
pub(crate) async fn postgres_relay(n: usize) -> f64 {
    jetwire_relay(postgres().await.into(), n).await
}

/// Commit-to-stored latency (p50, p99, in ms) at `rate` rows/s for
/// `duration`, the relay polling only every 500 ms: woken by NOTIFY.
pub(crate) async fn latency(rate: u32, duration: Duration) -> (f64, f64) {
    let pg = postgres().await;
    let (prefix, tables) = loaded(pg.clone().into(), 0, "latency").await;
    let client = async_nats::connect(server().url()).await.expect("connect");
    let mut sub = client
        .subscribe(format!("{prefix}.obench.rows"))
        .await
        .expect("sub");
    let app = App::new(config(&prefix))
        .only(&[])
        .service(Outbox::new(pg.clone()).tables(tables.clone()))
        .start()
        .await
        .expect("relay");
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let writers = 4;
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (pg, tables, committed) = (pg.clone(), tables.clone(), committed.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) * writers / rate);
                for _ in 0..total / writers as usize {
                    tick.tick().await;
                    let m = Message::json("obench.rows", &1, PublishOptions::new()).expect("valid");
                    let mut tx = pg.begin().await.expect("begin");
                    let id = tables.enqueue_message(&mut *tx, m).await.expect("enqueue");
                    tx.commit().await.expect("commit");
                    committed.lock().expect("lock").insert(id, Instant::now());
                }
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(total);
    while lat.len() < total / writers as usize * writers as usize {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a row within 10 s")
            .expect("message");
        let now = Instant::now();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string());
        // A row seen before its writer noted the commit counts as 0.
        let at = id.and_then(|id| committed.lock().expect("lock").get(&id).copied());
        lat.push(at.map_or(0.0, |t| now.duration_since(t).as_secs_f64() * 1000.0));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    app.shutdown().await.expect("shutdown");
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}
