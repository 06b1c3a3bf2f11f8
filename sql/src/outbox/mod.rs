//! Enqueuing messages inside the caller's transaction, and the relay that
//! publishes them ([`Outbox`]).
//!
//! A message is checked exactly as a publish is (subject grammar, JSON
//! encoding, headers) before anything is written, so a bad one is an
//! error inside the caller's transaction, never a failed row later.

use jetwire::PublishOptions;
use jetwire::codec::Encode;
use jetwire::publish::Message;

use crate::error::OutboxError;
use crate::tables::Tables;
use crate::wire::encode_pairs;

mod relay;
mod router;
mod row;
mod sql_store;
mod store;

pub use relay::{Outbox, OutboxStats, Route};
pub use router::Router;
pub use row::{Entry, Row};
pub use sql_store::{Counts, SqlStore};
pub use store::{Claim, Failure, Settlement, Store};

/// Header naming the publisher a row goes to ([`Outbox::destination`]);
/// taken off the message when it is enqueued.
pub const DESTINATION: &str = "Jetwire-Destination";

/// A connection inside the caller's transaction: `&mut *tx` of a
/// `sqlx::Transaction` on Postgres or SQLite (or a plain connection).
pub trait Connection<'c>: Send + sealed::Sealed {
    #[doc(hidden)]
    fn insert(self, sql: String, entry: Entry) -> jetwire::BoxFuture<'c, Result<(), sqlx::Error>>;
}

mod sealed {
    pub trait Sealed {}
}

/// A row's times are the database's (`{now}`), never the writer's: a
/// host whose clock is ahead does not hold its rows back.
pub(crate) const INSERT: &str = "INSERT INTO {table} (id, subject, key, destination, headers, payload, created_at, next_attempt_at)
   VALUES ($1, $2, $3, $4, $5, $6, {now}, {now})";

macro_rules! connection {
    ($feature:literal, $conn:ty, $placeholder:literal, $now:expr) => {
        #[cfg(feature = $feature)]
        impl sealed::Sealed for &mut $conn {}

        #[cfg(feature = $feature)]
        impl<'c> Connection<'c> for &'c mut $conn {
            fn insert(
                self,
                sql: String,
                entry: Entry,
            ) -> jetwire::BoxFuture<'c, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    let sql = sql.replace('$', $placeholder).replace("{now}", $now);
                    let (id, subject, key, destination, headers, payload) = entry.into_parts();
                    sqlx::query(&sql)
                        .bind(id)
                        .bind(subject)
                        .bind(key)
                        .bind(destination)
                        .bind(encode_pairs(&headers))
                        .bind(payload)
                        .execute(self)
                        .await?;
                    Ok(())
                })
            }
        }
    };
}

connection!(
    "postgres",
    sqlx::PgConnection,
    "$",
    crate::pool::POSTGRES_NOW
);
connection!(
    "sqlite",
    sqlx::SqliteConnection,
    "?",
    crate::pool::SQLITE_NOW
);

/// Saves `payload` to `subject`, as JSON or in its codec (a wrapper of
/// `jetwire::codec`, whose `Content-Type` it keeps), in the caller's transaction: it
/// is published once the transaction commits, never if it rolls back.
/// Returns the row's id, which is the message's `Nats-Msg-Id`.
///
/// This writes the tables without a prefix (`jetwire_outbox`); with a
/// relay on prefixed tables ([`Outbox::tables`]) enqueue through the same
/// [`Tables`]: [`Tables::enqueue`].
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// let id = jetwire_sql::outbox::enqueue(&mut *tx, "orders.created", &42).await?;
/// tx.commit().await?;
/// # let _ = id; Ok(()) }
/// ```
pub async fn enqueue<'c, T: Encode + ?Sized>(
    conn: impl Connection<'c>,
    subject: &str,
    payload: &T,
) -> Result<String, OutboxError> {
    enqueue_with(conn, subject, payload, PublishOptions::new()).await
}

/// [`enqueue`] with options: message id, correlation id, headers, and a
/// `key` (rows of one key are published in the order they were enqueued;
/// rows of different keys in parallel). A `Jetwire-Destination` header
/// picks the publisher ([`Outbox::destination`]).
pub async fn enqueue_with<'c, T: Encode + ?Sized>(
    conn: impl Connection<'c>,
    subject: &str,
    payload: &T,
    options: PublishOptions,
) -> Result<String, OutboxError> {
    Tables::default()
        .enqueue_with(conn, subject, payload, options)
        .await
}

/// [`enqueue_with`] for bytes as they are (no JSON, no content type).
pub async fn enqueue_raw<'c>(
    conn: impl Connection<'c>,
    subject: &str,
    payload: impl Into<bytes::Bytes>,
    options: PublishOptions,
) -> Result<String, OutboxError> {
    Tables::default()
        .enqueue_raw(conn, subject, payload, options)
        .await
}

impl Tables {
    /// [`enqueue`] into these tables: the ones a relay with
    /// [`Outbox::tables`]`(self)` reads.
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn demo(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
    /// let tables = jetwire_sql::Tables::with_prefix("billing_")?;
    /// let mut tx = pool.begin().await?;
    /// tables.enqueue(&mut *tx, "invoices.issued", &7).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue<'c, T: Encode + ?Sized>(
        &self,
        conn: impl Connection<'c>,
        subject: &str,
        payload: &T,
    ) -> Result<String, OutboxError> {
        self.enqueue_with(conn, subject, payload, PublishOptions::new())
            .await
    }

    /// [`enqueue_with`] into these tables.
    pub async fn enqueue_with<'c, T: Encode + ?Sized>(
        &self,
        conn: impl Connection<'c>,
        subject: &str,
        payload: &T,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let message = Message::json(subject, payload, options)?;
        self.enqueue_message(conn, message).await
    }

    /// [`enqueue_raw`] into these tables.
    pub async fn enqueue_raw<'c>(
        &self,
        conn: impl Connection<'c>,
        subject: &str,
        payload: impl Into<bytes::Bytes>,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let message = Message::raw(subject, payload, options)?;
        self.enqueue_message(conn, message).await
    }

    /// Saves a built message in these tables, in the caller's transaction.
    pub async fn enqueue_message<'c>(
        &self,
        conn: impl Connection<'c>,
        message: Message,
    ) -> Result<String, OutboxError> {
        self.enqueue_entry(conn, Entry::from(message)).await
    }

    /// Saves an [`Entry`] in these tables, in the caller's transaction
    /// (or on a plain connection, committed at once).
    pub async fn enqueue_entry<'c>(
        &self,
        conn: impl Connection<'c>,
        entry: Entry,
    ) -> Result<String, OutboxError> {
        let id = entry.id().to_owned();
        let sql = INSERT.replace("{table}", &self.outbox());
        conn.insert(sql, entry).await?;
        Ok(id)
    }
}
