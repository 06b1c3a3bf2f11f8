//! An outbox relay (or, with `OUTBOX_SERVICE=dead-letter-table`, the
//! dead-letter table) in its own process, for the tests that kill it.
//!
//! Reads `Config::from_env()`, `OUTBOX_DB` (a `postgres://` URL, or the
//! path of a SQLite file) and `OUTBOX_TABLES` (the table prefix); prints
//! `READY` once the relay runs, then `CLOCK <ms since 1970>` (its clock,
//! which a test may have set off); runs until killed or SIGTERM.

use std::io::Write;
use std::time::Duration;

use jetwire::{App, Config};
use jetwire_sql::{DeadLetterTable, Outbox, Pool, Tables};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::var("OUTBOX_DB")?;
    let tables = Tables::with_prefix(std::env::var("OUTBOX_TABLES")?)?;
    let pool: Pool = if db.starts_with("postgres://") {
        sqlx::PgPool::connect(&db).await?.into()
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        sqlx::SqlitePool::connect_with(options).await?.into()
    };
    let app = App::new(Config::from_env()?).only(&[]);
    let app = match std::env::var("OUTBOX_SERVICE").as_deref() {
        Ok("dead-letter-table") => app.service(
            DeadLetterTable::new(pool)
                .tables(tables)
                .ack_wait(Duration::from_secs(1)),
        ),
        _ => app.service(
            Outbox::new(pool)
                .tables(tables)
                .claim_for(Duration::from_secs(2))
                .poll_interval(Duration::from_millis(20))
                .batch(200),
        ),
    };
    let running = app.start().await?;
    let mut out = std::io::stdout();
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    writeln!(out, "READY")?;
    writeln!(out, "CLOCK {}", clock.as_millis())?;
    out.flush()?;
    tokio::signal::ctrl_c().await?;
    running.shutdown().await?;
    Ok(())
}
