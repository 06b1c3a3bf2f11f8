//! The transactional outbox on jetwire.
//!
//! An order and the `orders.created` event announcing it are saved in one
//! database transaction; the relay publishes the event once the
//! transaction has committed. `outbox demo` shows, against `NATS_URL`:
//!
//! 1. an order committed with its event: published once;
//! 2. an order rolled back: its event never published;
//! 3. a process that commits an order and dies before anything is
//!    published (`outbox commit-and-crash`, run as a child and killed by
//!    `abort`): its event is published by the relay afterwards;
//! 4. an order the handler refuses: dead-lettered, and copied into the
//!    `jetwire_dead_letters` table, read back with SQL.
//!
//! The database is a SQLite file in a temporary directory, or the
//! PostgreSQL database at `OUTBOX_DATABASE_URL` (`postgres://..`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Config, HandlerError, State, subscribe};
use jetwire_sql::{DeadLetterTable, Outbox, Pool};
use serde::{Deserialize, Serialize};

/// An order was placed.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order.
    pub order_id: i64,
    /// What it costs; negative totals are refused by the handler.
    pub total_cents: i64,
}

/// The orders the handler saw, and how often each.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<BTreeMap<i64, u32>>>);

#[subscribe("orders.created", max_deliver = 1)]
async fn on_order(order: OrderCreated, seen: State<Seen>) -> Result<(), HandlerError> {
    if order.total_cents < 0 {
        return Err(HandlerError::permanent(format!(
            "order {} has a negative total",
            order.order_id
        )));
    }
    *seen
        .0
        .0
        .lock()
        .expect("lock")
        .entry(order.order_id)
        .or_default() += 1;
    Ok(())
}

/// A row of the dead-letter table: subject, reason, error.
type Letter = (String, Option<String>, Option<String>);

/// The demo's database: SQLite in a temporary directory, or PostgreSQL.
enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    async fn open(url: &str) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres") {
            return Ok(Db::Postgres(sqlx::PgPool::connect(url).await?));
        }
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(url)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        Ok(Db::Sqlite(sqlx::SqlitePool::connect_with(options).await?))
    }

    fn pool(&self) -> Pool {
        match self {
            Db::Postgres(p) => p.clone().into(),
            Db::Sqlite(p) => p.clone().into(),
        }
    }

    async fn setup(&self) -> Result<(), Box<dyn std::error::Error>> {
        let create = "CREATE TABLE IF NOT EXISTS demo_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)";
        match self {
            Db::Postgres(p) => {
                jetwire_sql::migrate(p).await?;
                sqlx::query(create).execute(p).await?;
                sqlx::query("DELETE FROM demo_orders").execute(p).await?;
            }
            Db::Sqlite(p) => {
                jetwire_sql::migrate(p).await?;
                sqlx::query(create).execute(p).await?;
                sqlx::query("DELETE FROM demo_orders").execute(p).await?;
            }
        }
        Ok(())
    }

    /// Saves an order and its event in one transaction; commits it or
    /// rolls it back.
    async fn place(
        &self,
        order_id: i64,
        total_cents: i64,
        commit: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let event = OrderCreated {
            order_id,
            total_cents,
        };
        macro_rules! place {
            ($pool:expr, $insert:literal) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query($insert)
                    .bind(order_id)
                    .bind(total_cents)
                    .execute(&mut *tx)
                    .await?;
                jetwire_sql::outbox::enqueue(&mut *tx, "orders.created", &event).await?;
                if commit {
                    tx.commit().await?
                } else {
                    tx.rollback().await?
                }
            }};
        }
        match self {
            Db::Postgres(p) => place!(
                p,
                "INSERT INTO demo_orders (id, total_cents) VALUES ($1, $2)"
            ),
            Db::Sqlite(p) => place!(
                p,
                "INSERT INTO demo_orders (id, total_cents) VALUES (?1, ?2)"
            ),
        }
        Ok(())
    }

    async fn pending(&self) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COUNT(*) FROM jetwire_outbox WHERE status = 'pending'";
        match self {
            Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
    }

    /// The dead letters copied since `since` (ms since 1970).
    async fn dead_letters(&self, since: i64) -> Result<Vec<Letter>, sqlx::Error> {
        let sql = "SELECT subject, reason, error FROM jetwire_dead_letters WHERE stored_at >= $1 ORDER BY failed_at";
        match self {
            Db::Postgres(p) => sqlx::query_as(sql).bind(since).fetch_all(p).await,
            Db::Sqlite(p) => {
                sqlx::query_as(&sql.replace('$', "?"))
                    .bind(since)
                    .fetch_all(p)
                    .await
            }
        }
    }
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr, coloured only on a terminal: no escape codes in
    // a file or a pipe.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("demo") => demo().await,
        Some("commit-and-crash") => {
            let url = args.next().ok_or("commit-and-crash <database>")?;
            let db = Db::open(&url).await?;
            db.place(3, 300, true).await?;
            println!(
                "  child: order 3 and its event committed; dying before anything is published"
            );
            std::process::abort();
        }
        _ => Err("usage: outbox demo".into()),
    }
}

#[allow(clippy::print_stdout)]
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let sqlite = dir.path().join("orders.db").display().to_string();
    let url = std::env::var("OUTBOX_DATABASE_URL").unwrap_or(sqlite);
    let db = Db::open(&url).await?;
    db.setup().await?;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let kind = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("database: {kind}");

    db.place(1, 100, true).await?;
    println!("order 1 committed with its event");
    db.place(2, 200, false).await?;
    println!("order 2 rolled back: its event goes with it");
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["commit-and-crash", &url])
        .status()?;
    println!(
        "  child exited with {status}; events waiting in the outbox: {}",
        db.pending().await?
    );
    db.place(4, -1, true).await?;
    println!("order 4 committed (its total is negative: the handler will refuse it)");

    let mut config = Config::from_env()?;
    config.app = "outbox-demo".into();
    let seen = Seen::default();
    println!("starting the app: the handler, the relay and the dead-letter table");
    let running = App::new(config)
        .state(seen.clone())
        .service(Outbox::new(db.pool()).poll_interval(Duration::from_millis(50)))
        .service(DeadLetterTable::new(db.pool()))
        .start()
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while db.pending().await? > 0
        || db.dead_letters(started).await?.is_empty()
        || seen.0.lock().expect("lock").len() < 2
    {
        if tokio::time::Instant::now() > deadline {
            return Err("the events did not arrive within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await?;

    println!(
        "\nhandled (order: times): {:?}",
        seen.0.lock().expect("lock")
    );
    for (subject, reason, error) in db.dead_letters(started).await? {
        println!(
            "dead-letter table: {subject} reason={} error={}",
            reason.unwrap_or_default(),
            error.unwrap_or_default()
        );
    }
    let handled = seen.0.lock().expect("lock").clone();
    let expected: BTreeMap<i64, u32> = [(1, 1), (3, 1)].into();
    if handled != expected {
        return Err(format!("expected orders 1 and 3 once each, got {handled:?}").into());
    }
    println!(
        "orders 1 and 3 handled once each, order 2 never published, order 4 in the dead-letter table"
    );
    Ok(())
}

/// The example's handler in memory: an order is seen once; a negative
/// total is dead-lettered at once.
#[cfg(test)]
mod tests {
    use jetwire::DlqReason;
    use jetwire::testing::TestApp;

    use super::*;

    #[tokio::test]
    async fn orders_are_seen_once_and_a_negative_total_is_refused() {
        let seen = Seen::default();
        let app = TestApp::new().state(seen.clone());
        let ok = OrderCreated {
            order_id: 1,
            total_cents: 100,
        };
        assert!(app.publish("orders.created", &ok).await.acked());
        let bad = OrderCreated {
            order_id: 2,
            total_cents: -5,
        };
        let report = app.publish("orders.created", &bad).await;
        assert_eq!(report.dlq_reason(), Some(DlqReason::Permanent));
        let counts = seen.0.lock().expect("lock").clone();
        assert_eq!(counts, BTreeMap::from([(1, 1)]));
    }
}
