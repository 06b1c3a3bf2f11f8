//! Databases for the outbox tests: the tests' PostgreSQL ([`postgres_url`])
//! and SQLite files in temporary directories, each with its own table
//! prefix so that tests sharing a server never meet.
//!
//! [`postgres_url`]: crate::postgres_url

use std::time::Duration;

use jetwire::PublishOptions;
use jetwire_sql::Tables;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

/// Query `$sql` for one column, `$fetch`ed, on whichever database `$db` is.
macro_rules! scalar {
    ($db:expr, $sql:expr, $fetch:ident) => {
        match $db {
            TestDb::Postgres(p, ..) => sqlx::query_scalar(&$sql).$fetch(p).await,
            TestDb::Sqlite(p, ..) => sqlx::query_scalar(&$sql).$fetch(p).await,
        }
    };
}

/// A database of one kind, and the tables of one test in it.
pub enum TestDb {
    /// PostgreSQL.
    Postgres(sqlx::PgPool, Tables),
    /// A SQLite file, removed with its directory.
    Sqlite(sqlx::SqlitePool, Tables, tempfile::TempDir),
}

/// What to enqueue: subject, JSON payload, options.
pub type Row = (String, serde_json::Value, PublishOptions);

impl TestDb {
    /// The tests' PostgreSQL, with tables prefixed by a name unique to `name`.
    pub async fn postgres(name: &str) -> TestDb {
        let db = TestDb::postgres_unmigrated(name).await;
        db.tables().migrate(&db.pool()).await.expect("migrate");
        db
    }

    /// [`TestDb::postgres`] with no table made yet.
    pub async fn postgres_unmigrated(name: &str) -> TestDb {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(&crate::postgres::postgres_url())
            .await
            .expect("connect to the tests' PostgreSQL");
        let tables = Tables::with_prefix(table_prefix(name)).expect("a valid prefix");
        TestDb::Postgres(pool, tables)
    }

    /// A fresh SQLite file in WAL mode (several processes may share it).
    pub async fn sqlite(name: &str) -> TestDb {
        let db = TestDb::sqlite_unmigrated(name).await;
        db.tables().migrate(&db.pool()).await.expect("migrate");
        db
    }

    /// [`TestDb::sqlite`] with no table made yet.
    pub async fn sqlite_unmigrated(name: &str) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("outbox.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("open SQLite");
        let tables = Tables::with_prefix(table_prefix(name)).expect("a valid prefix");
        TestDb::Sqlite(pool, tables, dir)
    }

    /// The same database under other table names.
    pub fn with_tables(self, tables: Tables) -> TestDb {
        match self {
            TestDb::Postgres(pool, _) => TestDb::Postgres(pool, tables),
            TestDb::Sqlite(pool, _, dir) => TestDb::Sqlite(pool, tables, dir),
        }
    }

    /// Runs a script of statements, as a migration tool would.
    pub async fn run_script(&self, script: &str) {
        match self {
            TestDb::Postgres(p, ..) => sqlx::raw_sql(script).execute(p).await.map(drop),
            TestDb::Sqlite(p, ..) => sqlx::raw_sql(script).execute(p).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("the script runs: {e}\n{script}"));
    }

    /// Whether a table of this name exists.
    pub async fn has_table(&self, table: &str) -> bool {
        let sql = match self {
            TestDb::Postgres(..) => format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.tables WHERE table_name = '{table}'"
            ),
            TestDb::Sqlite(..) => format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ),
        };
        let n: Vec<i64> = scalar!(self, sql, fetch_all).expect("read the catalogue");
        n.first().copied().unwrap_or(0) > 0
    }

    /// Both kinds, for tests that run on each.
    pub async fn both(name: &str) -> Vec<TestDb> {
        vec![TestDb::postgres(name).await, TestDb::sqlite(name).await]
    }

    /// `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self {
            TestDb::Postgres(..) => "postgres",
            TestDb::Sqlite(..) => "sqlite",
        }
    }

    /// The pool, for the relay.
    pub fn pool(&self) -> jetwire_sql::Pool {
        match self {
            TestDb::Postgres(p, ..) => p.clone().into(),
            TestDb::Sqlite(p, ..) => p.clone().into(),
        }
    }

    /// The test's table names.
    pub fn tables(&self) -> &Tables {
        match self {
            TestDb::Postgres(_, t) | TestDb::Sqlite(_, t, _) => t,
        }
    }

    /// The SQLite file, for another process.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match self {
            TestDb::Sqlite(_, _, dir) => Some(dir.path().join("outbox.db")),
            TestDb::Postgres(..) => None,
        }
    }

    /// Enqueues `rows` in one transaction, committed or rolled back; the
    /// ids, or the first error (the transaction then rolls back).
    pub async fn enqueue(
        &self,
        rows: Vec<Row>,
        commit: bool,
    ) -> Result<Vec<String>, jetwire_sql::OutboxError> {
        let messages = rows
            .into_iter()
            .map(|(subject, payload, options)| {
                jetwire::publish::Message::json(&subject, &payload, options)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.enqueue_messages(messages, commit).await
    }

    /// [`TestDb::enqueue`] for messages built already (in any codec).
    pub async fn enqueue_messages(
        &self,
        messages: Vec<jetwire::publish::Message>,
        commit: bool,
    ) -> Result<Vec<String>, jetwire_sql::OutboxError> {
        macro_rules! run {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                let mut ids = Vec::new();
                for message in messages {
                    ids.push(self.tables().enqueue_message(&mut *tx, message).await?);
                }
                if commit {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(ids)
            }};
        }
        match self {
            TestDb::Postgres(p, ..) => run!(p),
            TestDb::Sqlite(p, ..) => run!(p),
        }
    }

    /// Rows in the outbox table, by status.
    pub async fn count(&self, status: &str) -> i64 {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE status = '{status}'",
            self.tables().outbox()
        );
        scalar!(self, sql, fetch_one).expect("count rows")
    }

    /// `last_error` of every `failed` row.
    pub async fn failures(&self) -> Vec<String> {
        self.errors("failed").await
    }

    /// `last_error` of every row of `status`, by seq.
    pub async fn errors(&self, status: &str) -> Vec<String> {
        let sql = format!(
            "SELECT COALESCE(last_error, '') FROM {} WHERE status = '{status}' ORDER BY seq",
            self.tables().outbox()
        );
        scalar!(self, sql, fetch_all).expect("read errors")
    }

    /// The outbox's [`SqlStore`](jetwire_sql::outbox::SqlStore), in the
    /// test's tables.
    pub fn store(&self) -> jetwire_sql::outbox::SqlStore {
        jetwire_sql::outbox::SqlStore::new(self.pool()).tables(self.tables().clone())
    }

    /// Runs one statement on the test's database (`{outbox}` stands for
    /// the outbox table): what an operator does by hand.
    pub async fn execute(&self, sql: &str) -> u64 {
        let sql = sql.replace("{outbox}", &self.tables().outbox());
        match self {
            TestDb::Postgres(p, ..) => sqlx::query(&sql)
                .execute(p)
                .await
                .map(|r| r.rows_affected()),
            TestDb::Sqlite(p, ..) => sqlx::query(&sql)
                .execute(p)
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("the statement runs")
    }

    /// From now on, counts the rows offered to `table` (duplicates an
    /// `ON CONFLICT DO NOTHING` drops included) and those it took, in a
    /// table beside it: what [`TestDb::inserts`] reads.
    pub async fn count_inserts(&self, table: &str) {
        let counts = format!("{table}_inserts");
        self.execute(&format!(
            "CREATE TABLE {counts} (kind TEXT PRIMARY KEY, n BIGINT NOT NULL)"
        ))
        .await;
        self.execute(&format!(
            "INSERT INTO {counts} VALUES ('offered', 0), ('taken', 0)"
        ))
        .await;
        for (when, kind) in [("BEFORE", "offered"), ("AFTER", "taken")] {
            let bump = format!("UPDATE {counts} SET n = n + 1 WHERE kind = '{kind}'");
            let trigger = format!("{table}_{kind}");
            match self {
                TestDb::Postgres(..) => {
                    self.execute(&format!(
                        "CREATE FUNCTION {trigger}() RETURNS trigger AS $$
                         BEGIN {bump}; RETURN NEW; END $$ LANGUAGE plpgsql"
                    ))
                    .await;
                    self.execute(&format!(
                        "CREATE TRIGGER {trigger} {when} INSERT ON {table}
                         FOR EACH ROW EXECUTE FUNCTION {trigger}()"
                    ))
                    .await;
                }
                TestDb::Sqlite(..) => {
                    self.execute(&format!(
                        "CREATE TRIGGER {trigger} {when} INSERT ON {table} BEGIN {bump}; END"
                    ))
                    .await;
                }
            };
        }
    }

    /// Makes each row offered to `table` take about 10 ms, so that a
    /// process writing it can be caught mid-batch.
    pub async fn slow_inserts(&self, table: &str) {
        let trigger = format!("{table}_slow");
        match self {
            TestDb::Postgres(..) => {
                self.execute(&format!(
                    "CREATE FUNCTION {trigger}() RETURNS trigger AS $$
                     BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$ LANGUAGE plpgsql"
                ))
                .await;
                self.execute(&format!(
                    "CREATE TRIGGER {trigger} BEFORE INSERT ON {table}
                     FOR EACH ROW EXECUTE FUNCTION {trigger}()"
                ))
                .await;
            }
            // No sleep in SQLite: a count to 15,000 instead.
            TestDb::Sqlite(..) => {
                self.execute(&format!(
                    "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} BEGIN
                       SELECT count(*) FROM (WITH RECURSIVE c(x) AS
                         (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 15000) SELECT x FROM c);
                     END"
                ))
                .await;
            }
        };
    }

    /// Rows offered to and taken by a table since [`TestDb::count_inserts`].
    pub async fn inserts(&self, table: &str) -> (i64, i64) {
        let read = |kind: &str| format!("SELECT n FROM {table}_inserts WHERE kind = '{kind}'");
        let offered: i64 = scalar!(self, read("offered"), fetch_one).expect("read counts");
        let taken: i64 = scalar!(self, read("taken"), fetch_one).expect("read counts");
        (offered, taken)
    }

    /// The path of the SQLite file, or the PostgreSQL URL: what another
    /// process opens.
    pub fn target(&self) -> String {
        match self.sqlite_file() {
            Some(file) => file.display().to_string(),
            None => crate::postgres::postgres_url(),
        }
    }

    /// One text column of every row of the dead-letter table.
    pub async fn letter_column(&self, column: &str) -> Vec<Option<String>> {
        let sql = format!(
            "SELECT {column} FROM {} ORDER BY id",
            self.tables().dead_letters()
        );
        scalar!(self, sql, fetch_all).expect("read letters")
    }

    /// The ids in the dead-letter table (never null).
    pub async fn letter_ids(&self) -> Vec<String> {
        self.letter_column("id")
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// A table prefix unique in this process: letters, digits and `_`.
fn table_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(12)
        .collect();
    format!("t{}_{n}_{clean}_", std::process::id()).to_ascii_lowercase()
}

/// The configuration of an app on the server at `url` that runs an
/// outbox relay under `prefix`.
pub fn relay_config(url: &str, prefix: &str) -> jetwire::Config {
    jetwire::Config::builder()
        .url(url)
        .app("relay")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("valid")
}

/// An app with no handlers running `outbox`'s relay, and the relay's
/// counts.
pub async fn start_relay(
    url: &str,
    prefix: &str,
    outbox: jetwire_sql::Outbox,
) -> (jetwire::RunningApp, jetwire_sql::outbox::OutboxStats) {
    let stats = outbox.stats();
    let running = jetwire::App::new(relay_config(url, prefix))
        .only(&[])
        .service(outbox)
        .start()
        .await
        .expect("the relay's app starts");
    (running, stats)
}
