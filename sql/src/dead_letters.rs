//! [`DeadLetterTable`]: every dead letter of the deployment, as a row.

use std::time::Duration;

use futures_util::StreamExt;
use jetwire::async_nats::jetstream::{self, AckKind, consumer::pull};
use jetwire::dlq::DeadLetter;
use jetwire::{BoxFuture, Error, RetryPause, Service, ServiceContext};

use crate::pool::{LetterRow, Pool};
use crate::tables::Tables;
use crate::wire::encode_headers;

/// Letters read at once.
const BATCH: usize = 100;
/// How long a batch (asked to end after 1 s) may go without a letter or
/// its end before it is given up on.
const BATCH_GIVEN_UP: Duration = Duration::from_secs(5);

/// Copies every letter of the deployment's dead-letter stream into the
/// table `jetwire_dead_letters`, as a [`Service`]: one row per letter
/// (its id is the letter's message id, unique, so a letter delivered
/// again after a crash is not stored twice), acked only once the row is
/// committed. Replicas share one durable (`jetwire-dead-letter-table`),
/// so each letter is written by one of them.
///
/// | column | what |
/// |---|---|
/// | `id` | the letter's `Nats-Msg-Id` |
/// | `subject` | the original subject (without the subject prefix) |
/// | `reason`, `error`, `handler`, `attempts` | why and where it failed |
/// | `original_stream`, `original_sequence` | where the original was |
/// | `headers`, `payload` | the letter as stored (JSON list of `[name, value]`; bytes) |
/// | `failed_at`, `stored_at` | when it was dead-lettered, and copied (ms since 1970) |
/// | `version` | the original payload's version (`Jetwire-Version`), if it had one |
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), jetwire::Error> {
/// jetwire::App::new(jetwire::Config::from_env()?)
///     .service(jetwire_sql::DeadLetterTable::new(pool))
///     .run()
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct DeadLetterTable {
    pool: Pool,
    tables: Tables,
    ack_wait: Duration,
}

impl DeadLetterTable {
    /// Copies dead letters into `pool` (a `sqlx::PgPool` or `SqlitePool`).
    pub fn new(pool: impl Into<Pool>) -> DeadLetterTable {
        DeadLetterTable {
            pool: pool.into(),
            tables: Tables::default(),
            ack_wait: Duration::from_secs(30),
        }
    }

    /// How long a letter read by a replica that died waits before another
    /// reads it (30 s): the durable's `ack_wait`, set when it is created.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Table names with a prefix.
    pub fn tables(mut self, tables: Tables) -> Self {
        self.tables = tables;
        self
    }
}

impl Service for DeadLetterTable {
    fn name(&self) -> &str {
        "dead-letter-table"
    }

    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async move { self.copy(ctx).await })
    }
}

impl DeadLetterTable {
    async fn copy(self, ctx: ServiceContext) -> Result<(), Error> {
        let prefix = ctx
            .config()
            .subject_prefix
            .clone()
            .filter(|p| !p.is_empty());
        let stream_name = jetwire::topology::dlq_stream(prefix.as_deref());
        let durable =
            jetwire::topology::service_durable(prefix.as_deref(), "jetwire-dead-letter-table");
        let stream = ctx
            .jetstream()
            .get_stream(&stream_name)
            .await
            .map_err(|e| Error::Stream {
                stream: stream_name.clone(),
                reason: format!("the dead-letter table cannot read it: {e}"),
            })?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    description: Some("jetwire: copies dead letters into a SQL table".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::Stream {
                stream: stream_name.clone(),
                reason: format!(
                    "cannot create the durable `{durable}` of the dead-letter table: {e}"
                ),
            })?;
        tracing::info!(stream = %stream_name, durable = %durable, table = %self.tables.dead_letters(), "copying dead letters into the table");
        let shutdown = ctx.shutdown();
        tokio::pin!(shutdown);
        let mut pause = RetryPause::new();
        loop {
            let batch = consumer
                .batch()
                .max_messages(BATCH)
                .expires(Duration::from_secs(1))
                .messages();
            let mut messages = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                batch = batch => match batch {
                    Ok(m) => {
                        pause.reset();
                        m
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "dead-letter table: cannot pull letters; trying again");
                        tokio::time::sleep(pause.after_failure()).await;
                        continue;
                    }
                },
            };
            // Shutdown stops it between letters: one read and not acked
            // comes again, to a replica, and is not stored twice. A batch
            // whose end never comes (a lost status) is given up on.
            loop {
                let next = tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    next = tokio::time::timeout(BATCH_GIVEN_UP, messages.next()) => next,
                };
                match next {
                    Ok(Some(Ok(message))) => self.store(prefix.as_deref(), &message).await,
                    _ => break,
                }
            }
        }
    }

    /// Inserts one letter, then acks it; a failed insert is handed back
    /// to come again.
    async fn store(&self, prefix: Option<&str>, message: &jetstream::Message) {
        let row = letter_row(prefix, message);
        match self.pool.insert_letter(&self.tables, &row).await {
            Ok(_) => {
                if let Err(e) = message.ack().await {
                    tracing::debug!(error = %e, id = %row.id, "dead-letter table: ack lost; the letter comes again and is not stored twice");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, id = %row.id, "dead-letter table: cannot store a letter; it comes again");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
}

/// The row of one letter, read by jetwire's own rules
/// ([`DeadLetter::from_message`]). Nothing in a letter is trusted to be
/// there.
fn letter_row(prefix: Option<&str>, m: &jetstream::Message) -> LetterRow {
    let letter = DeadLetter::from_message(prefix, m);
    // The id a letter always has; for one without, its place in the stream.
    let id = letter.letter_id().map_or_else(
        || {
            format!(
                "{}:{}",
                jetwire::topology::dlq_stream(prefix),
                letter.sequence()
            )
        },
        str::to_owned,
    );
    let failed_at = letter
        .failed_at()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    LetterRow {
        id,
        subject: letter.subject().to_owned(),
        reason: letter.reason().map(|r| r.to_string()),
        error: letter.error().map(str::to_owned),
        handler: letter.handler().map(str::to_owned),
        attempts: letter.attempts().map(i64::from),
        original_stream: letter.original_stream().map(str::to_owned),
        original_sequence: letter
            .original_sequence()
            .and_then(|s| i64::try_from(s).ok()),
        headers: encode_headers(letter.headers()),
        payload: letter.payload().to_vec(),
        failed_at,
        version: letter.version().map(str::to_owned),
    }
}
