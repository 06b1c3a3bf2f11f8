//! [`Outbox`]: the relay, a [`Service`] that claims committed rows,
//! publishes them and removes them once JetStream has stored them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jetwire::publish::Message;
use jetwire::{
    BoxFuture, Error, PublishError, PublishErrorKind, Publisher, RetryPause, Service,
    ServiceContext,
};

use crate::outbox::router::Routed;
use crate::outbox::store::{Claim, Failure as Failed, Settlement};
use crate::outbox::{Router, Row, SqlStore, Store};
use crate::pool::Pool;
use crate::tables::Tables;
use crate::wire::header_map;

/// Chooses the destination of a row that names none, from its subject:
/// `Some(name)` of a publisher given to [`Outbox::destination`], or `None`
/// for the app's own connection. ([`Router::route`] sees the whole row.)
pub type Route = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the relay did since it started. Cheap to clone; read while it runs.
#[derive(Debug, Clone, Default)]
pub struct OutboxStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

impl OutboxStats {
    /// Rows JetStream stored (duplicates of a republish included).
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }
    /// Publishes that failed and will be tried again.
    pub fn retried(&self) -> u64 {
        self.0.retried.load(Ordering::Relaxed)
    }
    /// Rows given up on: status `failed`, kept in the table.
    pub fn failed(&self) -> u64 {
        self.0.failed.load(Ordering::Relaxed)
    }
}

/// The relay: publishes committed outbox rows, as a [`Service`] of an
/// [`App`](jetwire::App). Many replicas may run one on the same database:
/// they share the work, and a row is claimed by one at a time.
///
/// - Claims up to `batch` due rows at once; rows of one key one at a time,
///   in the order they were enqueued, rows of different keys together.
/// - Publishes them pipelined with `Nats-Msg-Id` = the row id, waits for
///   every ack, then deletes them (or keeps them as `published` for
///   [`Outbox::keep_published`]).
/// - A failed publish counts an attempt, keeps the error, and tries again
///   after [`Outbox::backoff`]. NATS unreachable, an ack that does not
///   come, or a stream without a leader for a moment (an election) is an
///   outage: tried again for as long as it takes. A refusal of the stream
///   (a full stream, say) counts against `max_attempts`, after which the
///   row is `failed`, kept, logged and counted. A subject no stream
///   captures (the server says so) or a message the server never takes
///   fails the row at once with that reason. A row no rule of the
///   [`Router`] sends anywhere, or sent to a destination no publisher
///   serves, waits with the reason and is tried again, never given up.
///   Nothing is dropped, and a `failed` row holds back the later rows of
///   its key: they keep their order until an operator re-pends or
///   deletes it.
/// - Wakes on Postgres `LISTEN/NOTIFY` when a row is committed, and polls
///   every [`Outbox::poll_interval`] besides (the only way on SQLite).
/// - Reads and writes rows through a [`Store`]: the PostgreSQL or SQLite
///   table of [`Outbox::new`], or a store of any other database
///   ([`Outbox::with_store`]).
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo(pool: sqlx::PgPool, billing: jetwire::Publisher) -> Result<(), jetwire::Error> {
/// let relay = jetwire_sql::Outbox::new(pool)
///     .batch(500)
///     .max_attempts(10)
///     .destination("billing", billing); // rows with header Jetwire-Destination: billing
/// jetwire::App::new(jetwire::Config::from_env()?).service(relay).run().await
/// # }
/// ```
pub struct Outbox {
    store: Backing,
    tables: Option<Tables>,
    batch: u32,
    max_attempts: u32,
    backoff: Vec<Duration>,
    claim_for: Duration,
    poll_interval: Duration,
    keep_published: Option<Duration>,
    destinations: HashMap<String, Publisher>,
    route: Option<Route>,
    router: Option<Router>,
    stats: OutboxStats,
}

/// Where the rows are.
enum Backing {
    Sql(Pool),
    Own(Arc<dyn Store>),
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("tables", &self.tables)
            .field("batch", &self.batch)
            .field("router", &self.router)
            .field("max_attempts", &self.max_attempts)
            .field(
                "destinations",
                &self.destinations.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// A relay for the outbox in `pool` (a `sqlx::PgPool` or `SqlitePool`).
    pub fn new(pool: impl Into<Pool>) -> Outbox {
        Outbox::on(Backing::Sql(pool.into()))
    }

    /// A relay for the outbox in `store`: a database of your own.
    ///
    /// ```no_run
    /// # async fn demo(store: impl jetwire_sql::outbox::Store) -> Result<(), jetwire::Error> {
    /// let relay = jetwire_sql::Outbox::with_store(store);
    /// jetwire::App::new(jetwire::Config::from_env()?).service(relay).run().await
    /// # }
    /// ```
    pub fn with_store(store: impl Store) -> Outbox {
        Outbox::on(Backing::Own(Arc::new(store)))
    }

    fn on(store: Backing) -> Outbox {
        Outbox {
            store,
            tables: None,
            batch: 500,
            max_attempts: 10,
            backoff: [1, 2, 5, 10, 30, 60].map(Duration::from_secs).to_vec(),
            claim_for: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            keep_published: None,
            destinations: HashMap::new(),
            route: None,
            router: None,
            stats: OutboxStats::default(),
        }
    }

    /// Table names with a prefix (of the PostgreSQL or SQLite store; a
    /// store of your own names its own).
    pub fn tables(mut self, tables: Tables) -> Self {
        self.tables = Some(tables);
        self
    }

    /// Rows claimed at once (500).
    pub fn batch(mut self, rows: u32) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Publishes a stream may refuse before a row is `failed` (10). An
    /// outage (NATS or a stream's leader not there) does not count.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait before each retry of a row; the last repeats (1 s, 2 s,
    /// 5 s, 10 s, 30 s, 60 s).
    pub fn backoff(mut self, delays: &[Duration]) -> Self {
        if !delays.is_empty() {
            self.backoff = delays.to_vec();
        }
        self
    }

    /// How long a claim holds (30 s): a relay that dies leaves its rows to
    /// others after this, and one stalled longer may see them published
    /// again (under the same id, which the stream drops). Keep it well
    /// inside the streams' duplicate window.
    pub fn claim_for(mut self, lease: Duration) -> Self {
        self.claim_for = lease;
        self
    }

    /// How often the relay looks for due rows without being woken (500 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Keeps published rows (status `published`) this long instead of
    /// deleting them at once. They are removed once a minute, or once per
    /// `for_how_long` when that is shorter (at most once a second), also
    /// while a backlog keeps the relay busy.
    pub fn keep_published(mut self, for_how_long: Duration) -> Self {
        self.keep_published = Some(for_how_long);
        self
    }

    /// Rows with header `Jetwire-Destination: <name>` go through `publisher`
    /// (another cluster, account or prefix). Beside a [`Router`], names a
    /// publisher its rules may name too.
    pub fn destination(mut self, name: impl Into<String>, publisher: Publisher) -> Self {
        self.destinations.insert(name.into(), publisher);
        self
    }

    /// Picks a destination for rows that name none, by subject; `None`
    /// for the app's own connection. Without a [`Router`] only.
    pub fn route(mut self, route: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.route = Some(Arc::new(route));
        self
    }

    /// Routes rows by `router`'s rules instead: the first that matches
    /// wins, and a row none matches waits (see [`Router`]).
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// The relay's counters, to read while it runs.
    pub fn stats(&self) -> OutboxStats {
        self.stats.clone()
    }

    fn delay(&self, attempt: u32) -> Duration {
        jetwire::classify::backoff_delay(&self.backoff, attempt)
    }
}

impl Service for Outbox {
    fn name(&self) -> &str {
        "outbox"
    }

    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async move { self.settle_settings()?.run(ctx).await })
    }
}

/// Why a row could not be published, and whether trying again can help.
struct Failure {
    error: String,
    verdict: Verdict,
}

/// What a failure does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It cannot pass (no stream captures the subject, a message the
    /// server never takes): `failed` now.
    Final,
    /// The stream refused it for now (a full stream, say): counted
    /// against `max_attempts`.
    Counted,
    /// NATS or the stream's leader was not there, or no rule routes the
    /// row: tried again after the backoff for as long as it takes, never
    /// given up.
    Outage,
}

impl Failure {
    fn final_(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            verdict: Verdict::Final,
        }
    }
}

/// A relay as it runs: its store and its router, settled at start.
struct Relay {
    outbox: Outbox,
    store: Arc<dyn Store>,
    router: Router,
}

impl Outbox {
    /// The store and router this relay runs with, or what is wrong with
    /// its settings.
    fn settle_settings(self) -> Result<Relay, Error> {
        let store: Arc<dyn Store> = match &self.store {
            Backing::Sql(pool) => Arc::new(
                SqlStore::new(pool.clone()).tables(self.tables.clone().unwrap_or_default()),
            ),
            Backing::Own(_) if self.tables.is_some() => {
                return Err(Error::Config(
                    "Outbox::tables names the tables of the PostgreSQL or SQLite store; a store of your own (Outbox::with_store) names its own: remove Outbox::tables".to_owned(),
                ));
            }
            Backing::Own(store) => store.clone(),
        };
        let router = match (&self.router, &self.route) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "Outbox::route routes a relay without a router; beside Outbox::router, add it as a rule: Router::route(|row| ..)".to_owned(),
                ));
            }
            (Some(router), None) => router.clone().with_names(&self.destinations),
            (None, route) => Router::standard(self.destinations.clone(), route.clone()),
        };
        Ok(Relay {
            outbox: self,
            store,
            router,
        })
    }
}

impl Relay {
    async fn run(self, ctx: ServiceContext) -> Result<(), Error> {
        let mut purged_at: Option<Instant> = None;
        let mut pause = RetryPause::new();
        match (&self.outbox.store, &self.outbox.tables) {
            (Backing::Sql(_), tables) => {
                let table = tables.clone().unwrap_or_default().outbox();
                tracing::info!(table = %table, "outbox relay running");
            }
            (Backing::Own(_), _) => tracing::info!("outbox relay running on its own store"),
        }
        while !ctx.is_shutting_down() {
            let claim = match self
                .store
                .claim(self.outbox.claim_for, self.outbox.batch)
                .await
            {
                Ok(claim) => {
                    pause.reset();
                    claim
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot claim rows; trying again");
                    self.wait(&ctx, pause.after_failure()).await;
                    continue;
                }
            };
            if claim.rows().is_empty() {
                self.purge(&mut purged_at).await;
                self.wait(&ctx, self.outbox.poll_interval).await;
                continue;
            }
            self.publish(&ctx, claim).await;
            // Kept rows go under a backlog too (`purge` limits how often):
            // else a relay that never runs dry keeps every row.
            self.purge(&mut purged_at).await;
        }
        Ok(())
    }

    /// Waits for a saved row, `at_most`, or shutdown.
    async fn wait(&self, ctx: &ServiceContext, at_most: Duration) {
        tokio::select! {
            () = ctx.shutdown() => {}
            () = tokio::time::sleep(at_most) => {}
            () = self.store.saved() => {}
        }
    }

    /// Publishes claimed rows pipelined, waits for every ack, and records
    /// each outcome.
    async fn publish(&self, ctx: &ServiceContext, mut claim: Claim) {
        let rows = claim.take_rows();
        let mut sent = Vec::with_capacity(rows.len());
        let mut failed: Vec<(Row, Failure)> = Vec::new();
        for row in rows {
            match self.send(ctx, &row).await {
                Ok(pending) => sent.push((row, pending)),
                Err(f) => failed.push((row, f)),
            }
        }
        let acks = futures_util::future::join_all(
            sent.into_iter()
                .map(|(row, pending)| async move { (row, pending.await) }),
        )
        .await;
        let mut stored = Vec::new();
        for (row, ack) in acks {
            match ack {
                Ok(_) => stored.push(row.seq()),
                Err(e) => {
                    let failure = match self.publisher_for(ctx, &row) {
                        Ok(publisher) => classify(publisher, row.subject(), &e).await,
                        Err(f) => f,
                    };
                    failed.push((row, failure));
                }
            }
        }
        let failures: Vec<Failed> = failed.iter().map(|(row, f)| self.failure(row, f)).collect();
        let given_up = failures.iter().filter(|f| f.give_up()).count();
        let (published, retried) = (stored.len(), failures.len() - given_up);
        let settlement = Settlement::new(stored, self.outbox.keep_published.is_some(), failures);
        match self.store.settle(claim, &settlement).await {
            Ok(()) => {
                let count = |n: usize| n as u64;
                let s = &self.outbox.stats.0;
                s.published.fetch_add(count(published), Ordering::Relaxed);
                s.failed.fetch_add(count(given_up), Ordering::Relaxed);
                s.retried.fetch_add(count(retried), Ordering::Relaxed);
            }
            // The claim ends unrecorded: the rows go again, and what was
            // stored is dropped as a duplicate by its id.
            Err(e) => {
                tracing::warn!(error = %e, rows = published + given_up + retried, "outbox: cannot record what was published; the rows go again")
            }
        }
    }

    async fn send(
        &self,
        ctx: &ServiceContext,
        row: &Row,
    ) -> Result<jetwire::PendingReceipt, Failure> {
        if let Some(why) = row.problem() {
            return Err(Failure::final_(why));
        }
        let publisher = self.publisher_for(ctx, row)?;
        let headers = header_map(row.headers())
            .ok_or_else(|| Failure::final_("the row has a header whose name NATS cannot carry"))?;
        let message = Message::from_parts(row.subject(), headers, row.entry().payload().to_vec())
            .map_err(|e| Failure::final_(e.to_string()))?;
        match publisher.send_message(message).await {
            Ok(pending) => Ok(pending),
            Err(e) => Err(classify(publisher, row.subject(), &e).await),
        }
    }

    fn publisher_for<'a>(
        &'a self,
        ctx: &'a ServiceContext,
        row: &Row,
    ) -> Result<&'a Publisher, Failure> {
        match self.router.pick(row) {
            Routed::App => Ok(ctx.publisher()),
            Routed::Publisher(p) => Ok(p),
            Routed::Unroutable(why) => Err(Failure {
                error: why,
                verdict: Verdict::Outage,
            }),
        }
    }

    /// How a failed row is recorded: its next try, or given up; logged.
    fn failure(&self, row: &Row, f: &Failure) -> Failed {
        let attempts = row.attempts().saturating_add(1);
        let give_up = match f.verdict {
            Verdict::Final => true,
            Verdict::Counted => attempts >= self.outbox.max_attempts,
            Verdict::Outage => false,
        };
        let (id, subject, key) = (row.id(), row.subject(), row.key());
        if give_up {
            match key {
                Some(key) => {
                    tracing::error!(id = %id, subject = %subject, key = %key, attempts, error = %f.error, "outbox: row failed; it stays in the table with status `failed`, and the later rows of its key wait behind it: fix the cause, then set its status to 'pending' (or delete it to let them go)")
                }
                None => {
                    tracing::error!(id = %id, subject = %subject, attempts, error = %f.error, "outbox: row failed; it stays in the table with status `failed`: fix the cause, then set its status to 'pending'")
                }
            }
        } else {
            tracing::warn!(id = %id, subject = %subject, key = ?key, attempts, error = %f.error, "outbox: publish failed; trying again");
        }
        Failed::new(
            row.seq(),
            f.error.clone(),
            self.outbox.delay(attempts),
            give_up,
        )
    }

    /// Removes rows kept past `keep_published`: at most once a minute, or
    /// once per keep when that is shorter (but not above once a second).
    async fn purge(&self, purged_at: &mut Option<Instant>) {
        let Some(keep) = self.outbox.keep_published else {
            return;
        };
        let every = keep.clamp(Duration::from_secs(1), Duration::from_secs(60));
        if purged_at.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        *purged_at = Some(Instant::now());
        if let Err(e) = self.store.purge_published(keep).await {
            tracing::warn!(error = %e, "outbox: cannot remove old published rows");
        }
    }
}

/// What a failed publish of `subject` means for its row, from the
/// error's kind. No JetStream answering is a stream without a leader for
/// a moment (an election, a restart) as often as a subject nothing
/// stores: only the server saying no stream captures the subject makes it
/// final.
async fn classify(publisher: &Publisher, subject: &str, e: &PublishError) -> Failure {
    let error = e.to_string();
    let verdict = match e.kind() {
        PublishErrorKind::Invalid => Verdict::Final,
        PublishErrorKind::Refused(_) => Verdict::Counted,
        PublishErrorKind::NoResponders => match publisher.stream_of(subject).await {
            Ok(None) => {
                return Failure::final_(format!(
                    "no stream captures the subject `{subject}`: {error}; create one (or fix the subject), then set the row's status to 'pending'"
                ));
            }
            Ok(Some(_)) | Err(_) => Verdict::Outage,
        },
        _ => Verdict::Outage,
    };
    Failure { error, verdict }
}
