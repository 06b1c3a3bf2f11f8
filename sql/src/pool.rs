//! [`Pool`]: a Postgres or SQLite pool, and the statements the relay and
//! the dead-letter table run on it. One SQL text serves both databases
//! where it can: placeholders are written `$1` and become `?1` for SQLite.

use std::borrow::Cow;

use crate::tables::Tables;

/// The database the outbox and dead-letter table live in. Made from a
/// `sqlx::PgPool` or a `sqlx::SqlitePool` with `.into()`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Pool {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for Pool {
    fn from(p: sqlx::PgPool) -> Self {
        Pool::Postgres(p)
    }
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for Pool {
    fn from(p: sqlx::SqlitePool) -> Self {
        Pool::Sqlite(p)
    }
}

/// Runs `$body` with `$p` bound to the concrete pool.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres($p) => $body,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($p) => $body,
        }
    };
}

/// A dead letter as stored in the table.
#[derive(Debug, Clone)]
pub(crate) struct LetterRow {
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) reason: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) attempts: Option<i64>,
    pub(crate) original_stream: Option<String>,
    pub(crate) original_sequence: Option<i64>,
    pub(crate) headers: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) failed_at: i64,
    /// The payload's version (`Jetwire-Version`), if the original had one.
    pub(crate) version: Option<String>,
}

/// PostgreSQL's clock, in milliseconds since 1970, as SQL: the start of
/// the statement (stable within it, so the planner can use indexes).
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_NOW: &str =
    "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)";

/// SQLite's clock, in milliseconds since 1970, as SQL: the same value
/// everywhere in one statement.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

impl Pool {
    /// The database's clock, as SQL. Every time the tables hold, and every
    /// comparison with one, uses it: a writer's or a relay's clock never
    /// decides when a row is due, so hosts need not agree on the time.
    pub(crate) fn now(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => POSTGRES_NOW,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => SQLITE_NOW,
        }
    }

    /// `sql` for this database: `$N` placeholders become `?N` on SQLite.
    pub(crate) fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Cow::Borrowed(sql),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Cow::Owned(sql.replace('$', "?")),
        }
    }

    /// Stores a dead letter once: a letter already there (redelivered
    /// after a crash) is left as it is. Whether it was new.
    pub(crate) async fn insert_letter(
        &self,
        t: &Tables,
        l: &LetterRow,
    ) -> Result<bool, sqlx::Error> {
        let text = format!(
            "INSERT INTO {} (id, subject, reason, error, handler, attempts, original_stream,
               original_sequence, headers, payload, failed_at, version, stored_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, {})
             ON CONFLICT (id) DO NOTHING",
            t.dead_letters(),
            self.now()
        );
        let sql = self.sql(&text);
        let inserted = on_pool!(self, p => sqlx::query(&sql)
            .bind(&l.id).bind(&l.subject).bind(&l.reason).bind(&l.error).bind(&l.handler)
            .bind(l.attempts).bind(&l.original_stream).bind(l.original_sequence)
            .bind(&l.headers).bind(&l.payload).bind(l.failed_at).bind(&l.version)
            .execute(p).await?.rows_affected());
        Ok(inserted == 1)
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    /// Many first migrations at once, as replicas starting together run
    /// them (each its own thread and connection), all succeed.
    #[test]
    fn concurrent_first_migrations_on_one_file_succeed() {
        let file = std::env::temp_dir().join(format!("jetwire-migrate-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(30));
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
        };
        // The file is made, and put in WAL mode, once: switching the mode
        // takes a lock that opening connections do not wait for, and is
        // not what this test is about.
        runtime().block_on(async {
            let made = sqlx::sqlite::SqlitePool::connect_with(options.clone()).await;
            made.expect("the file is made").close().await;
        });
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let (done, results) = std::sync::mpsc::channel();
        for i in 0..8 {
            let (options, start, done) = (options.clone(), start.clone(), done.clone());
            std::thread::spawn(move || {
                let migrated = runtime().block_on(async move {
                    let pool = sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await;
                    // Every replica reaches the barrier, opened or not, so
                    // one that failed fails the test instead of hanging it.
                    start.wait();
                    let pool = pool.map_err(|e| format!("open: {e}"))?;
                    // Two sets of tables: the first migration of each
                    // writes while others read theirs.
                    let tables = Tables::with_prefix(format!("r{}_", i % 2)).expect("prefix");
                    let migrated = tables.migrate(&pool).await.map_err(|e| format!("{e}"));
                    pool.close().await;
                    migrated
                });
                let _ = done.send(migrated);
            });
        }
        drop(done);
        for _ in 0..8 {
            results
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("every replica ends within two minutes")
                .expect("a migration running beside others succeeds");
        }
        for end in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{end}", file.display()));
        }
    }
}
