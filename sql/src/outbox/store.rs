//! [`Store`]: what the relay needs of the database its outbox lives in.
//! PostgreSQL and SQLite are [`SqlStore`](crate::outbox::SqlStore); any
//! other database implements these four calls.

use std::time::Duration;

use jetwire::BoxFuture;

use crate::error::OutboxError;
use crate::outbox::{Entry, Row};

/// An outbox on some database: saves entries, hands due rows to a relay
/// under a lease, and records what became of them. [`Outbox::with_store`]
/// relays from it.
///
/// The relay's guarantees rest on four rules a store keeps:
///
/// 1. **Due rows only.** [`Store::claim`] returns rows that are pending,
///    whose next try is due, that no live lease holds, and that are the
///    first of their key among the rows not yet published (a pending or
///    failed earlier row of the key holds the later ones back), lowest
///    [`Row::seq`] first, at most `limit`.
/// 2. **A lease.** Claimed rows are held for `lease` (another relay's
///    claim skips them meanwhile), under a token the [`Claim`] carries.
/// 3. **Only the lease holder settles.** [`Store::settle`] writes only rows
///    that still carry the claim's token: a relay whose lease lapsed, and
///    whose rows another relay claimed since, writes nothing.
/// 4. **One clock.** Due times and leases are the store's own clock (the
///    database server's), never a relay's.
///
/// A claimed row is `processing` until it is settled or its lease lapses.
/// A store that keeps these rules is tested the way jetwire's are: see
/// the store kept in memory among jetwire's tests.
///
/// [`Outbox::with_store`]: crate::Outbox::with_store
pub trait Store: Send + Sync + 'static {
    /// Saves `entry` on its own (not in a caller's transaction): it is
    /// committed when this returns. (Saving inside a caller's transaction
    /// is the caller's own `INSERT` of the entry's fields.)
    fn save(&self, entry: Entry) -> BoxFuture<'_, Result<(), OutboxError>>;

    /// Claims up to `limit` due rows for `lease` (rules 1, 2, 4).
    fn claim(&self, lease: Duration, limit: u32) -> BoxFuture<'_, Result<Claim, OutboxError>>;

    /// Records what became of a claim's rows (rule 3): published rows
    /// removed, or kept with status `published` when
    /// [`Settlement::keep_published`]; each failure counted, its error kept,
    /// due again after its delay or `failed` for good; the lease ended.
    fn settle<'a>(
        &'a self,
        claim: Claim,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), OutboxError>>;

    /// Removes rows kept as `published` for longer than `older_than`;
    /// how many. A store that never keeps them has nothing to do.
    fn purge_published(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, OutboxError>> {
        let _ = older_than;
        Box::pin(async { Ok(0) })
    }

    /// Resolves when rows may have been saved (a notification), so the
    /// relay need not wait for its poll interval. By default never: the
    /// relay polls.
    fn saved(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// Rows one relay claimed, and the token of their lease.
#[derive(Debug, Clone)]
pub struct Claim {
    rows: Vec<Row>,
    token: i64,
}

impl Claim {
    /// A claim of `rows` under `token`: what the store marked them with
    /// (the lease's end, say), which [`Store::settle`] matches.
    pub fn new(mut rows: Vec<Row>, token: i64) -> Claim {
        rows.sort_by_key(Row::seq);
        Claim { rows, token }
    }
    /// Nothing was due.
    pub fn none() -> Claim {
        Claim::new(Vec::new(), 0)
    }
    /// The rows, lowest seq first.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
    /// The lease's token.
    pub fn token(&self) -> i64 {
        self.token
    }
    pub(crate) fn take_rows(&mut self) -> Vec<Row> {
        std::mem::take(&mut self.rows)
    }
}

/// What became of a claim's rows.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    published: Vec<i64>,
    keep_published: bool,
    failures: Vec<Failure>,
}

impl Settlement {
    /// The seqs of the rows JetStream stored.
    pub fn published(&self) -> &[i64] {
        &self.published
    }
    /// Whether published rows are kept (status `published`, with the time)
    /// instead of removed.
    pub fn keep_published(&self) -> bool {
        self.keep_published
    }
    /// The rows that did not go.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }
    /// A settlement: the seqs JetStream stored, whether to keep them, and
    /// the failures (a store's own tests settle claims with this).
    pub fn new(published: Vec<i64>, keep_published: bool, failures: Vec<Failure>) -> Self {
        Settlement {
            published,
            keep_published,
            failures,
        }
    }
}

/// A row that did not go: its attempts grow by one and its error is kept.
#[derive(Debug, Clone)]
pub struct Failure {
    seq: i64,
    error: String,
    retry_in: Duration,
    give_up: bool,
}

impl Failure {
    /// The row of `seq` did not go because of `error`: due again
    /// `retry_in` from now, or `failed` for good if `give_up`.
    pub fn new(seq: i64, error: impl Into<String>, retry_in: Duration, give_up: bool) -> Failure {
        Failure {
            seq,
            error: error.into(),
            retry_in,
            give_up,
        }
    }
    /// The row's seq.
    pub fn seq(&self) -> i64 {
        self.seq
    }
    /// Why it did not go.
    pub fn error(&self) -> &str {
        &self.error
    }
    /// When it is due again, from now (the store's clock).
    pub fn retry_in(&self) -> Duration {
        self.retry_in
    }
    /// Whether it is given up: status `failed`, kept for an operator, its
    /// key's later rows held back behind it.
    pub fn give_up(&self) -> bool {
        self.give_up
    }
}

/// A store shared with the code that saves to it: the relay and the
/// writers hold one `Arc`.
impl<S: Store> Store for std::sync::Arc<S> {
    fn save(&self, entry: Entry) -> BoxFuture<'_, Result<(), OutboxError>> {
        (**self).save(entry)
    }
    fn claim(&self, lease: Duration, limit: u32) -> BoxFuture<'_, Result<Claim, OutboxError>> {
        (**self).claim(lease, limit)
    }
    fn settle<'a>(
        &'a self,
        claim: Claim,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        (**self).settle(claim, settlement)
    }
    fn purge_published(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, OutboxError>> {
        (**self).purge_published(older_than)
    }
    fn saved(&self) -> BoxFuture<'_, ()> {
        (**self).saved()
    }
}
