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
    /// `sql` for this database: `$N` placeholders become `?N` on SQLite,
    /// and `FOR UPDATE SKIP LOCKED` is kept on Postgres only.
    pub(crate) fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Cow::Borrowed(sql),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => {
                Cow::Owned(sql.replace('$', "?").replace("FOR UPDATE SKIP LOCKED", ""))
            }
        }
    }

    /// Claims up to `batch` due rows until `lease_until` (ms): pending,
    /// due, not claimed by another relay, and first of their key among
    /// pending rows. One statement, so a claim is atomic on both
    /// databases; on Postgres, rows another relay is claiming right now
    /// are skipped instead of waited for.
    pub(crate) async fn claim(
        &self,
        t: &Tables,
        now: i64,
        lease_until: i64,
        batch: i64,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
        let table = t.outbox();
        let text = format!(
            "UPDATE {table} SET claimed_until = $1 WHERE seq IN (
               SELECT o.seq FROM {table} o
               WHERE o.status = 'pending' AND o.next_attempt_at <= $2 AND o.claimed_until <= $2
                 AND (o.key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM {table} e WHERE e.key = o.key AND e.seq < o.seq AND e.status = 'pending'))
               ORDER BY o.seq LIMIT $3
               FOR UPDATE SKIP LOCKED)
             RETURNING seq, id, subject, key, destination, headers, payload, attempts"
        );
        let sql = self.sql(&text);
        let rows = on_pool!(self, p => {
            sqlx::query(&sql).bind(lease_until).bind(now).bind(batch).fetch_all(p).await?
                .into_iter().map(|r| Ok(Claimed {
                    seq: r.try_get("seq")?,
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    key: r.try_get("key")?,
                    destination: r.try_get("destination")?,
                    headers: r.try_get("headers")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let mut rows = rows;
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    /// Rows JetStream stored: deleted, or kept as `published` at `now`.
    pub(crate) async fn published(
        &self,
        t: &Tables,
        seqs: &[i64],
        keep: bool,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        if seqs.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = seqs.iter().map(i64::to_string).collect();
        let table = t.outbox();
        let text = if keep {
            format!(
                "UPDATE {table} SET status = 'published', published_at = {now}, claimed_until = 0 WHERE seq IN ({})",
                list.join(",")
            )
        } else {
            format!("DELETE FROM {table} WHERE seq IN ({})", list.join(","))
        };
        on_pool!(self, p => sqlx::query(&text).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// A failed publish: one attempt more, its error, and either the next
    /// try at `next_at` or, with `give_up`, status `failed`.
    pub(crate) async fn failed(
        &self,
        t: &Tables,
        seq: i64,
        error: &str,
        next_at: i64,
        give_up: bool,
    ) -> Result<(), sqlx::Error> {
        let text = format!(
            "UPDATE {} SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
               claimed_until = 0, status = $3 WHERE seq = $4",
            t.outbox()
        );
        let sql = self.sql(&text);
        let status = if give_up { "failed" } else { "pending" };
        on_pool!(self, p => sqlx::query(&sql).bind(error).bind(next_at).bind(status).bind(seq)
            .execute(p).await.map(|_| ())?);
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
