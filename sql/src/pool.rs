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
pub(crate) use on_pool;

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
    #[cfg(feature = "postgres")]
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

/// A failed publish, as recorded.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) seq: i64,
    pub(crate) error: String,
    pub(crate) next_at: i64,
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
}

impl Pool {
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
    /// key among pending rows.
    ///
    /// On Postgres the rows are locked in a transaction (`FOR UPDATE SKIP
    /// LOCKED`: another relay skips them instead of waiting) that
    /// [`Pool::settle`] commits; a relay that dies rolls back, and its rows
    /// are due again at once. On SQLite, which has no row locks, one
    /// statement marks them claimed until `lease_until` (ms); a relay that
    /// dies leaves them to others once the lease lapses.
    pub(crate) async fn claim(
        &self,
        t: &Tables,
        now: i64,
        lease_until: i64,
        batch: i64,
    ) -> Result<Claim, sqlx::Error> {
        let table = t.outbox();
        let due = format!(
            "o.status = 'pending' AND o.next_attempt_at <= $1 AND o.claimed_until <= $1
             AND (o.key IS NULL OR NOT EXISTS (
               SELECT 1 FROM {table} e WHERE e.key = o.key AND e.seq < o.seq AND e.status = 'pending'))"
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
                     ORDER BY o.seq LIMIT $2 FOR UPDATE SKIP LOCKED"
                );
                let mut tx = p.begin().await?;
                let found = sqlx::query(&text)
                    .bind(now)
                    .bind(batch)
                    .fetch_all(&mut *tx)
                    .await?;
                let rows = rows!(found);
                Claim { rows, tx: Some(tx) }
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                let text = format!(
                    "UPDATE {table} SET claimed_until = ?2 WHERE seq IN (
                       SELECT o.seq FROM {table} o WHERE {} ORDER BY o.seq LIMIT ?3)
                     RETURNING {columns}",
                    due.replace('$', "?")
                );
                let found = sqlx::query(&text)
                    .bind(now)
                    .bind(lease_until)
                    .bind(batch)
                    .fetch_all(p)
                    .await?;
                Claim {
                    rows: rows!(found),
                    #[cfg(feature = "postgres")]
                    tx: None,
                }
            }
        };
        claim.rows.sort_by_key(|r| r.seq);
        Ok(claim)
    }

    /// Records what became of a claim: `stored` rows deleted (or kept as
    /// `published` at `now`), each failure counted with its error and
    /// either its next try or status `failed`; then ends the claim.
    pub(crate) async fn settle(
        &self,
        t: &Tables,
        claim: Claim,
        stored: &[i64],
        keep: bool,
        now: i64,
        failures: &[Failed],
    ) -> Result<(), sqlx::Error> {
        let table = t.outbox();
        let list: Vec<String> = stored.iter().map(i64::to_string).collect();
        let done = match keep {
            true => format!(
                "UPDATE {table} SET status = 'published', published_at = {now}, claimed_until = 0 WHERE seq IN ({})",
                list.join(",")
            ),
            false => format!("DELETE FROM {table} WHERE seq IN ({})", list.join(",")),
        };
        let fail = format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
               claimed_until = 0, status = $3 WHERE seq = $4"
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
                        .bind(f.next_at)
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

    /// Removes `published` rows kept since before `before` (ms).
    pub(crate) async fn purge_published(
        &self,
        t: &Tables,
        before: i64,
    ) -> Result<u64, sqlx::Error> {
        let text = format!(
            "DELETE FROM {} WHERE status = 'published' AND published_at < $1",
            t.outbox()
        );
        let sql = self.sql(&text);
        Ok(on_pool!(self, p => sqlx::query(&sql).bind(before).execute(p).await?.rows_affected()))
    }

    /// Stores a dead letter once: a letter already there (redelivered
    /// after a crash) is left as it is. Whether it was new.
    pub(crate) async fn insert_letter(
        &self,
        t: &Tables,
        l: &LetterRow,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let text = format!(
            "INSERT INTO {} (id, subject, reason, error, handler, attempts, original_stream,
               original_sequence, headers, payload, failed_at, stored_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO NOTHING",
            t.dead_letters()
        );
        let sql = self.sql(&text);
        let inserted = on_pool!(self, p => sqlx::query(&sql)
            .bind(&l.id).bind(&l.subject).bind(&l.reason).bind(&l.error).bind(&l.handler)
            .bind(l.attempts).bind(&l.original_stream).bind(l.original_sequence)
            .bind(&l.headers).bind(&l.payload).bind(l.failed_at).bind(now)
            .execute(p).await?.rows_affected());
        Ok(inserted == 1)
    }
}
