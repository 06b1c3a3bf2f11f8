//! The tables, their names (with an optional prefix), and the migrations
//! that make them: plain SQL run once each, recorded in a table of their
//! own, safe to run from many replicas at once.

use crate::error::OutboxError;
use crate::pool::Pool;
use crate::tables::Tables;

impl Tables {
    /// Runs the migrations not yet run, for these names.
    pub async fn migrate(&self, pool: &(impl Into<Pool> + Clone)) -> Result<(), OutboxError> {
        let pool: Pool = pool.clone().into();
        let steps = self.steps(&pool);
        let schema = self.schema();
        macro_rules! run {
            ($tx:ident) => {{
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {schema} (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
                ))
                .execute(&mut *$tx)
                .await?;
                let done: Vec<i64> = sqlx::query_scalar(&format!("SELECT CAST(version AS BIGINT) FROM {schema}"))
                    .fetch_all(&mut *$tx)
                    .await?;
                for (version, statements) in steps.iter().enumerate() {
                    let version = version as i64 + 1;
                    if done.contains(&version) {
                        continue;
                    }
                    for statement in statements {
                        sqlx::query(statement).execute(&mut *$tx).await?;
                    }
                    sqlx::query(&pool.sql(&format!("INSERT INTO {schema} (version, applied_at) VALUES ($1, {})", pool.now())))
                        .bind(version)
                        .execute(&mut *$tx)
                        .await?;
                }
                $tx.commit().await?;
            }};
        }
        // Migrations of one database run one at a time, across processes.
        match &pool {
            // An advisory lock, held until commit.
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::raw_sql("SELECT pg_advisory_xact_lock(7254896310)")
                    .execute(&mut *tx)
                    .await?;
                run!(tx)
            }
            // The database's one write lock, taken before anything is
            // read (a deferred transaction that read first could not take
            // it after another migration wrote: SQLITE_BUSY_SNAPSHOT).
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                run!(tx)
            }
        }
        Ok(())
    }

    /// The migrations [`Tables::migrate`] runs, in order, each one SQL
    /// script for `pool`'s database: to keep them in your own migration
    /// tool (sqlx, refinery, Flyway) instead, write each as a migration of
    /// yours and do not call `migrate`. Every statement is idempotent
    /// (`IF NOT EXISTS`) but the later ones' `ALTER TABLE .. ADD COLUMN`.
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?;
    /// let tables = jetwire_sql::Tables::default().dead_letters_named("failed_tasks")?;
    /// for (n, script) in tables.migration_sql(&pool).iter().enumerate() {
    ///     std::fs::write(format!("migrations/{:03}_jetwire.sql", n + 1), script)?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn migration_sql(&self, pool: &(impl Into<Pool> + Clone)) -> Vec<String> {
        self.steps(&pool.clone().into())
            .into_iter()
            .map(|statements| {
                if statements.is_empty() {
                    return "-- nothing to do on this database\n".to_owned();
                }
                let mut script = statements.join(";\n\n");
                script.push_str(";\n");
                script
            })
            .collect()
    }

    /// The migrations, in order: each a list of statements.
    fn steps(&self, pool: &Pool) -> Vec<Vec<String>> {
        let (outbox, letters) = (self.outbox(), self.dead_letters());
        let (serial, blob) = match pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
        };
        #[allow(unused_mut)] // extended on PostgreSQL only
        let mut first = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {outbox} (
                   seq {serial},
                   id TEXT NOT NULL UNIQUE,
                   subject TEXT NOT NULL,
                   key TEXT,
                   destination TEXT,
                   headers TEXT NOT NULL,
                   payload {blob} NOT NULL,
                   status TEXT NOT NULL DEFAULT 'pending',
                   attempts INTEGER NOT NULL DEFAULT 0,
                   last_error TEXT,
                   created_at BIGINT NOT NULL,
                   next_attempt_at BIGINT NOT NULL,
                   claimed_until BIGINT NOT NULL DEFAULT 0,
                   published_at BIGINT)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {outbox}_due ON {outbox} (status, seq)"),
            format!("CREATE INDEX IF NOT EXISTS {outbox}_key ON {outbox} (key, seq)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {letters} (
                   id TEXT PRIMARY KEY,
                   subject TEXT NOT NULL,
                   reason TEXT,
                   error TEXT,
                   handler TEXT,
                   attempts BIGINT,
                   original_stream TEXT,
                   original_sequence BIGINT,
                   headers TEXT NOT NULL,
                   payload {blob} NOT NULL,
                   failed_at BIGINT NOT NULL,
                   stored_at BIGINT NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {letters}_failed ON {letters} (failed_at)"),
        ];
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)] // without SQLite, every pool is one
        if let Pool::Postgres(_) = pool {
            let channel = self.channel();
            first.extend([
                format!(
                    "CREATE OR REPLACE FUNCTION {outbox}_notify() RETURNS trigger AS $$
                     BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$ LANGUAGE plpgsql"
                ),
                format!("DROP TRIGGER IF EXISTS {outbox}_notify ON {outbox}"),
                format!(
                    "CREATE TRIGGER {outbox}_notify AFTER INSERT ON {outbox}
                     FOR EACH STATEMENT EXECUTE FUNCTION {outbox}_notify()"
                ),
            ]);
        }
        // The version of the letter's payload (`Jetwire-Version`).
        let versions = vec![format!("ALTER TABLE {letters} ADD COLUMN version TEXT")];
        // A claim writes each row's lease: with room left in each page,
        // PostgreSQL updates it in place (no new index entries).
        #[allow(unused_mut)] // only PostgreSQL has a step here
        let mut room = vec![];
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)] // without SQLite, every pool is one
        if let Pool::Postgres(_) = pool {
            room.push(format!("ALTER TABLE {outbox} SET (fillfactor = 50)"));
        }
        vec![first, versions, room]
    }
}

/// Runs the migrations with the default table names. Safe to call from
/// every replica at startup.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?;
/// jetwire_sql::migrate(&pool).await?;
/// # Ok(()) }
/// ```
pub async fn migrate(pool: &(impl Into<Pool> + Clone)) -> Result<(), OutboxError> {
    Tables::default().migrate(pool).await
}
