//! [`SqlStore`]: the outbox in a PostgreSQL or SQLite table, the
//! [`Store`] a relay made with [`Outbox::new`](crate::Outbox::new) uses.

use std::time::Duration;

use jetwire::BoxFuture;
use sqlx::Row as _;

use crate::error::OutboxError;
use crate::outbox::store::{Claim, Settlement, Store};
use crate::outbox::{Entry, INSERT, Row};
use crate::pool::Pool;
use crate::tables::Tables;
use crate::wire::{decode_pairs, encode_pairs};

/// The outbox table of a PostgreSQL or SQLite database ([`Tables`] names
/// it). A claim is one statement that marks the rows it returns with a
/// lease (`claimed_until`), `FOR UPDATE SKIP LOCKED` on PostgreSQL so
/// relays claiming at once skip each other's rows. A claimed row is
/// visible to any query as `processing` ([`SqlStore::counts`]) until it is
/// settled; a relay that dies leaves its rows to others once the lease
/// lapses ([`Outbox::claim_for`](crate::Outbox::claim_for)).
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo(pool: sqlx::SqlitePool) -> Result<(), jetwire_sql::OutboxError> {
/// use jetwire::PublishOptions;
/// use jetwire_sql::outbox::{Entry, SqlStore, Store};
///
/// let store = SqlStore::new(pool);
/// store.save(Entry::json("orders.created", &42, PublishOptions::new())?).await?; // no transaction of yours
/// let counts = store.counts().await?;
/// assert_eq!(counts.pending + counts.processing, 1);
/// # Ok(()) }
/// ```
pub struct SqlStore {
    pool: Pool,
    tables: Tables,
    #[cfg(feature = "postgres")]
    listener: tokio::sync::Mutex<Listen>,
}

#[cfg(feature = "postgres")]
enum Listen {
    Untried,
    On(Box<sqlx::postgres::PgListener>),
    Off,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

/// How many rows of an outbox are in each state, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Waiting to be published (due or not), claimed by no relay.
    pub pending: i64,
    /// Claimed by a relay under a live lease: being published.
    pub processing: i64,
    /// Given up on, kept for an operator.
    pub failed: i64,
    /// Published and kept ([`Outbox::keep_published`](crate::Outbox::keep_published)).
    pub published: i64,
}

/// A claimed row from its columns; one whose headers do not decode is
/// kept, to be failed with that reason.
macro_rules! read_row {
    ($r:expr) => {{
        let r = $r;
        let seq: i64 = r.try_get("seq")?;
        let attempts = u32::try_from(r.try_get::<i32, _>("attempts")?).unwrap_or(0);
        let text: String = r.try_get("headers")?;
        let decoded = decode_pairs(&text);
        let readable = decoded.is_some();
        let entry = Entry::from_parts(
            r.try_get("id")?,
            r.try_get("subject")?,
            r.try_get("key")?,
            r.try_get("destination")?,
            decoded.unwrap_or_default(),
            r.try_get("payload")?,
        );
        match readable {
            true => Row::new(seq, attempts, entry),
            false => Row::unreadable(
                seq,
                attempts,
                entry,
                "the row's headers are not a JSON list of [name, value] pairs",
            ),
        }
    }};
}

impl SqlStore {
    /// The outbox in `pool` (a `sqlx::PgPool` or `SqlitePool`), in tables
    /// without a prefix.
    pub fn new(pool: impl Into<Pool>) -> SqlStore {
        SqlStore {
            pool: pool.into(),
            tables: Tables::default(),
            #[cfg(feature = "postgres")]
            listener: tokio::sync::Mutex::new(Listen::Untried),
        }
    }

    /// In these tables.
    pub fn tables(mut self, tables: Tables) -> SqlStore {
        self.tables = tables;
        self
    }

    /// How many rows are pending, processing, failed and published.
    pub async fn counts(&self) -> Result<Counts, OutboxError> {
        let text = format!(
            "SELECT CASE WHEN status = 'pending' AND claimed_until > {} THEN 'processing' ELSE status END AS state,
               COUNT(*) AS n FROM {} GROUP BY 1",
            self.pool.now(),
            self.tables.outbox()
        );
        let rows: Vec<(String, i64)> =
            on_pool!(&self.pool, p => sqlx::query_as(&text).fetch_all(p).await?);
        let mut counts = Counts::default();
        for (state, n) in rows {
            match state.as_str() {
                "pending" => counts.pending = n,
                "processing" => counts.processing = n,
                "failed" => counts.failed = n,
                "published" => counts.published = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn claim_rows(&self, lease: i64, limit: i64) -> Result<Claim, sqlx::Error> {
        let table = self.tables.outbox();
        let now = self.pool.now();
        let due = format!(
            "o.status = 'pending' AND o.next_attempt_at <= {now} AND o.claimed_until <= {now}
             AND (o.key IS NULL OR NOT EXISTS (
               SELECT 1 FROM {table} e WHERE e.key = o.key AND e.seq < o.seq AND e.status IN ('pending', 'failed')))"
        );
        let columns =
            "seq, id, subject, key, destination, headers, payload, attempts, claimed_until";
        let text = match self.pool {
            // Relays claiming at once skip each other's rows instead of
            // waiting. A join, not `seq IN (..)`: a subquery with a limit
            // under `IN` is a filter over the whole table.
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => format!(
                "UPDATE {table} t SET claimed_until = {now} + $1 FROM (
                   SELECT o.seq FROM {table} o WHERE {due} ORDER BY o.seq LIMIT $2 FOR UPDATE SKIP LOCKED) c
                 WHERE t.seq = c.seq RETURNING {}",
                columns.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
            ),
            // SQLite writes one statement at a time.
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => format!(
                "UPDATE {table} SET claimed_until = {now} + $1 WHERE seq IN (
                   SELECT o.seq FROM {table} o WHERE {due} ORDER BY o.seq LIMIT $2)
                 RETURNING {columns}"
            ),
        };
        let sql = self.pool.sql(&text);
        let found = on_pool!(&self.pool, p => {
            let found = sqlx::query(&sql).bind(lease.max(1)).bind(limit).fetch_all(p).await?;
            found.iter().map(|r| Ok((read_row!(r), r.try_get::<i64, _>("claimed_until")?))).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        // One statement reads one time: every row has the same lease.
        let token = found.first().map_or(0, |(_, lease)| *lease);
        Ok(Claim::new(
            found.into_iter().map(|(row, _)| row).collect(),
            token,
        ))
    }

    async fn settle_rows(&self, claim: Claim, s: &Settlement) -> Result<(), sqlx::Error> {
        let table = self.tables.outbox();
        let now = self.pool.now();
        let list: Vec<String> = s.published().iter().map(i64::to_string).collect();
        let lease = claim.token();
        let done = match s.keep_published() {
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
        let fail = self.pool.sql(&fail);
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            if !list.is_empty() {
                sqlx::query(&done).execute(&mut *tx).await?;
            }
            for f in s.failures() {
                let status = if f.give_up() { "failed" } else { "pending" };
                sqlx::query(&fail)
                    .bind(f.error())
                    .bind(millis(f.retry_in()))
                    .bind(status)
                    .bind(f.seq())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn insert(&self, entry: Entry) -> Result<(), sqlx::Error> {
        let text = INSERT
            .replace("{table}", &self.tables.outbox())
            .replace("{now}", self.pool.now());
        let sql = self.pool.sql(&text);
        let (id, subject, key, destination, headers, payload) = entry.into_parts();
        on_pool!(&self.pool, p => sqlx::query(&sql)
            .bind(id).bind(subject).bind(key).bind(destination)
            .bind(encode_pairs(&headers)).bind(payload)
            .execute(p).await.map(|_| ())?);
        Ok(())
    }

    #[cfg(feature = "postgres")]
    async fn notified(&self) {
        let mut listen = self.listener.lock().await;
        if let (Listen::Untried, Pool::Postgres(p)) = (&*listen, &self.pool) {
            *listen = match sqlx::postgres::PgListener::connect_with(p).await {
                Ok(mut l) => match l.listen(&self.tables.channel()).await {
                    Ok(()) => Listen::On(Box::new(l)),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: cannot LISTEN; polling instead");
                        Listen::Off
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot LISTEN; polling instead");
                    Listen::Off
                }
            };
        }
        match &mut *listen {
            Listen::On(listener) => {
                if let Err(e) = listener.recv().await {
                    tracing::debug!(error = %e, "outbox: LISTEN connection lost; it reconnects");
                }
            }
            _ => std::future::pending().await,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

impl Store for SqlStore {
    fn save(&self, entry: Entry) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move { Ok(self.insert(entry).await?) })
    }

    fn claim(&self, lease: Duration, limit: u32) -> BoxFuture<'_, Result<Claim, OutboxError>> {
        Box::pin(async move { Ok(self.claim_rows(millis(lease), i64::from(limit)).await?) })
    }

    fn settle<'a>(
        &'a self,
        claim: Claim,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        Box::pin(async move { Ok(self.settle_rows(claim, settlement).await?) })
    }

    fn purge_published(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, OutboxError>> {
        Box::pin(async move {
            let text = format!(
                "DELETE FROM {} WHERE status = 'published' AND published_at < {} - $1",
                self.tables.outbox(),
                self.pool.now()
            );
            let sql = self.pool.sql(&text);
            let keep = millis(older_than);
            Ok(
                on_pool!(&self.pool, p => sqlx::query(&sql).bind(keep).execute(p).await?.rows_affected()),
            )
        })
    }

    fn saved(&self) -> BoxFuture<'_, ()> {
        #[cfg(feature = "postgres")]
        return Box::pin(self.notified());
        #[cfg(not(feature = "postgres"))]
        Box::pin(std::future::pending())
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::outbox::store::Failure;

    async fn sqlite() -> (SqlStore, sqlx::SqlitePool) {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        Tables::default().migrate(&pool).await.expect("migrate");
        let insert = "INSERT INTO jetwire_outbox (id, subject, headers, payload, created_at, next_attempt_at)
                      VALUES ('a', 's', '[]', x'', 0, 0), ('b', 's', '[]', x'', 0, 0)";
        sqlx::query(insert).execute(&pool).await.expect("rows");
        (SqlStore::new(pool.clone()), pool)
    }

    async fn statuses(p: &sqlx::SqlitePool) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT status, claimed_until FROM jetwire_outbox ORDER BY seq")
            .fetch_all(p)
            .await
            .expect("read")
    }

    /// A relay whose lease lapsed while it was stalled settles nothing:
    /// the rows are another relay's by then, published and kept, and stay so.
    #[tokio::test]
    async fn a_relay_whose_lease_lapsed_writes_nothing() {
        let (store, p) = sqlite().await;
        let ms = Duration::from_millis;
        let stalled = store.claim(ms(300), 10).await.expect("claim");
        assert_eq!(stalled.rows().len(), 2);
        let counts = store.counts().await.expect("counts");
        assert_eq!(
            (counts.pending, counts.processing),
            (0, 2),
            "claimed rows are processing"
        );
        let held = store.claim(ms(60_000), 10).await.expect("claim");
        assert!(held.rows().is_empty(), "claimed while the lease holds");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let other = loop {
            let claim = store.claim(ms(60_000), 10).await.expect("claim");
            if !claim.rows().is_empty() || std::time::Instant::now() > deadline {
                break claim;
            }
            tokio::time::sleep(ms(20)).await;
        };
        assert_eq!(other.rows().len(), 2, "the lapsed lease's rows go again");
        store
            .settle(other, &Settlement::new(vec![1, 2], true, Vec::new()))
            .await
            .expect("settle");
        let failed = Failure::new(2, "ack timed out", Duration::ZERO, true);
        store
            .settle(stalled, &Settlement::new(vec![1], false, vec![failed]))
            .await
            .expect("settle");
        assert_eq!(
            statuses(&p).await,
            vec![("published".to_owned(), 0), ("published".to_owned(), 0)],
            "the stalled relay neither deleted, re-pended nor failed a row"
        );
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.processing, counts.published), (0, 2));
    }

    /// Due times and leases are the database's: a row written with the
    /// database's clock is due at once, one due a minute from it is not.
    #[tokio::test]
    async fn rows_fall_due_by_the_databases_clock() {
        let (store, p) = sqlite().await;
        let now = crate::pool::SQLITE_NOW;
        let update =
            format!("UPDATE jetwire_outbox SET next_attempt_at = {now} + 60000 WHERE seq = 2");
        sqlx::query(&update).execute(&p).await.expect("update");
        let update = format!("UPDATE jetwire_outbox SET next_attempt_at = {now} WHERE seq = 1");
        sqlx::query(&update).execute(&p).await.expect("update");
        let claim = store
            .claim(Duration::from_secs(60), 10)
            .await
            .expect("claim");
        let seqs: Vec<i64> = claim.rows().iter().map(Row::seq).collect();
        assert_eq!(seqs, vec![1]);
        let db_now: i64 = sqlx::query_scalar(&format!("SELECT {now}"))
            .fetch_one(&p)
            .await
            .expect("now");
        assert!(
            (db_now + 55_000..=db_now + 60_000).contains(&claim.token()),
            "a lease of 60 s from the database's now {db_now}: {}",
            claim.token()
        );
    }

    /// A row whose headers were damaged in the table is claimed, to be
    /// failed with the reason, instead of stalling the relay.
    #[tokio::test]
    async fn a_row_with_damaged_headers_is_claimed_as_unreadable() {
        let (store, p) = sqlite().await;
        sqlx::query("UPDATE jetwire_outbox SET headers = '{not a list' WHERE seq = 1")
            .execute(&p)
            .await
            .expect("damage");
        let claim = store
            .claim(Duration::from_secs(60), 10)
            .await
            .expect("claim");
        let problems: Vec<Option<&str>> = claim.rows().iter().map(Row::problem).collect();
        assert!(
            problems[0].is_some_and(|w| w.contains("not a JSON list")),
            "{problems:?}"
        );
        assert_eq!(problems[1], None);
    }
}
