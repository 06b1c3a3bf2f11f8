//! jetwire's transactional outbox and dead-letter table, on PostgreSQL
//! (feature `postgres`) and SQLite (feature `sqlite`), through sqlx.
//!
//! **The outbox.** A service saves its data and the messages that announce
//! it in one database transaction ([`outbox::enqueue`]); the relay
//! ([`Outbox`], a [`jetwire::Service`]) publishes committed rows to
//! JetStream and removes them once JetStream has stored them. A rolled-back
//! transaction publishes nothing; a crash after commit loses nothing.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use jetwire::{App, Config, PublishOptions};
//!
//! jetwire_sql::migrate(&pool).await?;
//! let mut tx = pool.begin().await?;
//! sqlx::query("insert into orders (id) values ($1)").bind(42_i64).execute(&mut *tx).await?;
//! jetwire_sql::outbox::enqueue(&mut *tx, "orders.created", &serde_json::json!({"order_id": 42})).await?;
//! jetwire_sql::outbox::enqueue_with(&mut *tx, "queue.email", &"hello",
//!     PublishOptions::new().key("order-42")).await?;          // one key: published in order
//! tx.commit().await?;                                          // rolled back: never published
//!
//! App::new(Config::from_env()?)
//!     .service(jetwire_sql::Outbox::new(pool.clone()))         // the relay
//!     .service(jetwire_sql::DeadLetterTable::new(pool))        // every dead letter, as a row
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! **Effectively once.** Each row is published with `Nats-Msg-Id` = its
//! id (a UUIDv7), and removed only after JetStream acked it. A relay that
//! dies in between leaves the row to be published again, under the same
//! id, which the stream drops as a duplicate as long as it comes within
//! the stream's duplicate window: once the claim lapses
//! ([`Outbox::claim_for`], 30 s by default), well inside the 2 minutes
//! jetwire's streams remember ids at least.
//!
//! **Routing and other databases.** [`outbox::Router`] sends rows to
//! publishers by ordered rules; [`outbox::Store`] is what the relay needs
//! of a database, for [`Outbox::with_store`].
//!
//! **The dead-letter table.** [`DeadLetterTable`] copies every letter of
//! the deployment's `DLQ` stream into `jetwire_dead_letters`, once each,
//! for operators who query failures with SQL.

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!("jetwire-sql needs a database: enable the `postgres` or `sqlite` feature");

#[macro_use]
mod pool;
mod dead_letters;
mod error;
mod schema;
mod tables;
mod wire;

pub mod outbox;

pub use dead_letters::DeadLetterTable;
pub use error::OutboxError;
pub use outbox::Outbox;
pub use pool::Pool;
pub use schema::migrate;
pub use tables::Tables;
