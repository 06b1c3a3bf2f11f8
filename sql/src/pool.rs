//! [`Pool`]: a Postgres or SQLite pool, and the statements the relay and
//! the dead-letter table run on it. One SQL text serves both databases
//! where it can: placeholders are written `$1` and become `?1` for SQLite.

use std::borrow::Cow;

use sqlx::Row as _;

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

/// One outbox row, as claimed.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) key: Option<String>,
    pub(crate) destination: Option<String>,
    pub(crate) headers: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) attempts: i32,
}

/// Rows claimed by one relay, and on Postgres the transaction holding
/// their locks.
pub(crate) struct Claim {
    pub(crate) rows: Vec<Claimed>,
    /// The `claimed_until` these rows were claimed with (0 on Postgres,
    /// where the lock is the claim): settling writes only rows that still
    /// carry it, so a relay whose SQLite lease lapsed (and whose rows
    /// another relay claimed since) writes nothing.
    lease: i64,
    #[cfg(feature = "postgres")]
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

/// A failed publish, as recorded.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) seq: i64,
    pub(crate) error: String,
    /// Milliseconds from now (the database's) to the row's next try.
    pub(crate) retry_in: i64,
    pub(crate) give_up: bool,
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

    /// Claims up to `batch` due rows: pending, due, and first of their
    /// key among the rows not yet published (a `failed` row holds back
    /// the later rows of its key until an operator deals with it).
    ///
    /// On Postgres the rows are locked in a transaction (`FOR UPDATE SKIP
    /// LOCKED`: another relay skips them instead of waiting) that
    /// [`Pool::settle`] commits; a relay that dies rolls back, and its rows
    /// are due again at once. On SQLite, which has no row locks, one
    /// statement marks them claimed for `lease` ms; a relay that dies
    /// leaves them to others once the lease lapses.
    pub(crate) async fn claim(
        &self,
        t: &Tables,
        lease: i64,
        batch: i64,
    ) -> Result<Claim, sqlx::Error> {
        let table = t.outbox();
        let now = self.now();
        let due = format!(
            "o.status = 'pending' AND o.next_attempt_at <= {now} AND o.claimed_until <= {now}
             AND (o.key IS NULL OR NOT EXISTS (
               SELECT 1 FROM {table} e WHERE e.key = o.key AND e.seq < o.seq AND e.status IN ('pending', 'failed')))"
        );
        let columns = "seq, id, subject, key, destination, headers, payload, attempts";
        macro_rules! rows {
            ($query:expr) => {
                $query
                    .into_iter()
                    .map(|r| {
                        Ok(Claimed {
                            seq: r.try_get("seq")?,
                            id: r.try_get("id")?,
                            subject: r.try_get("subject")?,
                            key: r.try_get("key")?,
                            destination: r.try_get("destination")?,
                            headers: r.try_get("headers")?,
                            payload: r.try_get("payload")?,
                            attempts: r.try_get("attempts")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?
            };
        }
        let mut claim = match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                let text = format!(
                    "SELECT {columns} FROM {table} o WHERE {due}
                     ORDER BY o.seq LIMIT $1 FOR UPDATE SKIP LOCKED"
                );
                let mut tx = p.begin().await?;
                let found = sqlx::query(&text).bind(batch).fetch_all(&mut *tx).await?;
                let rows = rows!(found);
                Claim {
                    rows,
                    lease: 0,
                    tx: Some(tx),
                }
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                let text = format!(
                    "UPDATE {table} SET claimed_until = {now} + ?1 WHERE seq IN (
                       SELECT o.seq FROM {table} o WHERE {due} ORDER BY o.seq LIMIT ?2)
                     RETURNING {columns}, claimed_until"
                );
                let found = sqlx::query(&text)
                    .bind(lease.max(1))
                    .bind(batch)
                    .fetch_all(p)
                    .await?;
                // One statement reads one time: every row has the same lease.
                let lease = match found.first() {
                    Some(r) => r.try_get("claimed_until")?,
                    None => 0,
                };
                Claim {
                    rows: rows!(found),
                    lease,
                    #[cfg(feature = "postgres")]
                    tx: None,
                }
            }
        };
        claim.rows.sort_by_key(|r| r.seq);
        Ok(claim)
    }

    /// Records what became of a claim: `stored` rows deleted (or kept as
    /// `published`, now), each failure counted with its error and either
    /// its next try or status `failed`; then ends the claim.
    pub(crate) async fn settle(
        &self,
        t: &Tables,
        claim: Claim,
        stored: &[i64],
        keep: bool,
        failures: &[Failed],
    ) -> Result<(), sqlx::Error> {
        let table = t.outbox();
        let now = self.now();
        let list: Vec<String> = stored.iter().map(i64::to_string).collect();
        let lease = claim.lease;
        let done = match keep {
            true => format!(
                "UPDATE {table} SET status = 'published', published_at = {now}, claimed_until = 0
                   WHERE seq IN ({}) AND claimed_until = {lease} AND status = 'pending'",
                list.join(",")
            ),
            false => format!(
                "DELETE FROM {table} WHERE seq IN ({}) AND claimed_until = {lease} AND status = 'pending'",
                list.join(",")
            ),
        };
        let fail = format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = $1, next_attempt_at = {now} + $2,
               claimed_until = 0, status = $3 WHERE seq = $4 AND claimed_until = {lease} AND status = 'pending'"
        );
        let fail = self.sql(&fail);
        macro_rules! settle {
            ($tx:expr) => {{
                if !stored.is_empty() {
                    sqlx::query(&done).execute(&mut *$tx).await?;
                }
                for f in failures {
                    let status = if f.give_up { "failed" } else { "pending" };
                    sqlx::query(&fail)
                        .bind(&f.error)
                        .bind(f.retry_in)
                        .bind(status)
                        .bind(f.seq)
                        .execute(&mut *$tx)
                        .await?;
                }
                $tx.commit().await?;
            }};
        }
        match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => match claim.tx {
                Some(mut tx) => settle!(tx),
                None => {
                    let mut tx = p.begin().await?;
                    settle!(tx)
                }
            },
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                let mut tx = p.begin().await?;
                settle!(tx)
            }
        }
        Ok(())
    }

    /// Removes `published` rows kept longer than `keep` ms.
    pub(crate) async fn purge_published(&self, t: &Tables, keep: i64) -> Result<u64, sqlx::Error> {
        let text = format!(
            "DELETE FROM {} WHERE status = 'published' AND published_at < {} - $1",
            t.outbox(),
            self.now()
        );
        let sql = self.sql(&text);
        Ok(on_pool!(self, p => sqlx::query(&sql).bind(keep).execute(p).await?.rows_affected()))
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

    async fn sqlite() -> (Pool, Tables) {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        let tables = Tables::default();
        tables.migrate(&pool).await.expect("migrate");
        let insert = "INSERT INTO jetwire_outbox (id, subject, headers, payload, created_at, next_attempt_at)
                      VALUES ('a', 's', '[]', x'', 0, 0), ('b', 's', '[]', x'', 0, 0)";
        sqlx::query(insert).execute(&pool).await.expect("rows");
        (pool.into(), tables)
    }

    async fn statuses(pool: &Pool) -> Vec<(String, i64)> {
        let Pool::Sqlite(p) = pool else {
            unreachable!("sqlite")
        };
        sqlx::query_as("SELECT status, claimed_until FROM jetwire_outbox ORDER BY seq")
            .fetch_all(p)
            .await
            .expect("read")
    }

    /// A relay whose lease lapsed while it was stalled settles nothing:
    /// the rows are another relay's by then, published and kept, and stay so.
    #[tokio::test]
    async fn a_relay_whose_lease_lapsed_writes_nothing() {
        let (pool, t) = sqlite().await;
        let stalled = pool.claim(&t, 300, 10).await.expect("claim");
        assert_eq!(stalled.rows.len(), 2);
        let held = pool.claim(&t, 60_000, 10).await.expect("claim");
        assert!(held.rows.is_empty(), "claimed while the lease holds");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let other = loop {
            let claim = pool.claim(&t, 60_000, 10).await.expect("claim");
            if !claim.rows.is_empty() || std::time::Instant::now() > deadline {
                break claim;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(other.rows.len(), 2, "the lapsed lease's rows go again");
        pool.settle(&t, other, &[1, 2], true, &[])
            .await
            .expect("settle");
        let failed = |seq| Failed {
            seq,
            error: "ack timed out".into(),
            retry_in: 0,
            give_up: seq == 2,
        };
        pool.settle(&t, stalled, &[1], false, &[failed(2)])
            .await
            .expect("settle");
        let published = statuses(&pool).await;
        assert_eq!(
            published,
            vec![("published".to_owned(), 0), ("published".to_owned(), 0)],
            "the stalled relay neither deleted, re-pended nor failed a row"
        );
    }

    /// Due times and leases are the database's: a row written with the
    /// database's clock is due at once, one due a minute from it is not.
    #[tokio::test]
    async fn rows_fall_due_by_the_databases_clock() {
        let (pool, t) = sqlite().await;
        let Pool::Sqlite(p) = &pool else {
            unreachable!("sqlite")
        };
        let update = format!(
            "UPDATE jetwire_outbox SET next_attempt_at = {SQLITE_NOW} + 60000 WHERE seq = 2"
        );
        sqlx::query(&update).execute(p).await.expect("update");
        sqlx::query(&format!(
            "UPDATE jetwire_outbox SET next_attempt_at = {SQLITE_NOW} WHERE seq = 1"
        ))
        .execute(p)
        .await
        .expect("update");
        let claim = pool.claim(&t, 60_000, 10).await.expect("claim");
        let seqs: Vec<i64> = claim.rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1]);
        let lease = claim.lease;
        let now: i64 = sqlx::query_scalar(&format!("SELECT {SQLITE_NOW}"))
            .fetch_one(p)
            .await
            .expect("now");
        assert!(
            (now + 55_000..=now + 60_000).contains(&lease),
            "a lease of 60 s from the database's now {now}: {lease}"
        );
    }

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
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let replicas: Vec<_> = (0..8)
            .map(|i| {
                let (options, start) = (options.clone(), start.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    rt.block_on(async move {
                        let pool = sqlx::sqlite::SqlitePoolOptions::new()
                            .max_connections(1)
                            .connect_with(options)
                            .await
                            .expect("open");
                        // Two sets of tables: the first migration of each
                        // writes while others read theirs.
                        let tables = Tables::with_prefix(format!("r{}_", i % 2)).expect("prefix");
                        start.wait();
                        let migrated = tables.migrate(&pool).await;
                        pool.close().await;
                        migrated
                    })
                })
            })
            .collect();
        for replica in replicas {
            replica
                .join()
                .expect("joined")
                .expect("a migration running beside others succeeds");
        }
        let _ = std::fs::remove_file(&file);
    }
}
