//! An outbox kept in memory: a third [`Store`] beside PostgreSQL and
//! SQLite, written only against the trait's public surface, which shows
//! the trait is all a relay needs of a database.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jetwire::BoxFuture;
use jetwire_sql::OutboxError;
use jetwire_sql::outbox::{Claim, Entry, Row, Settlement, Store};

/// An outbox in a `Mutex`, with its own clock (milliseconds since it was
/// made, from 1 so that 0 means "not claimed").
#[derive(Debug)]
pub struct MemoryStore {
    rows: Mutex<Rows>,
    started: Instant,
    saved: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Rows {
    next_seq: i64,
    by_seq: BTreeMap<i64, Slot>,
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    due: i64,
    claimed_until: i64,
    published_at: i64,
}

/// One row as the store holds it, for a test to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its seq.
    pub seq: i64,
    /// `pending`, `failed` or `published`.
    pub status: &'static str,
    /// Failed publishes.
    pub attempts: u32,
    /// The last failure's error.
    pub last_error: Option<String>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            rows: Mutex::default(),
            started: Instant::now(),
            saved: tokio::sync::Notify::new(),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn now(&self) -> i64 {
        millis(self.started.elapsed()) + 1
    }

    /// Every row still held, lowest seq first.
    pub fn held(&self) -> Vec<Held> {
        let rows = self.rows.lock().expect("not poisoned");
        rows.by_seq
            .iter()
            .map(|(seq, s)| Held {
                seq: *seq,
                status: s.status,
                attempts: s.attempts,
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}

impl Store for MemoryStore {
    fn save(&self, entry: Entry) -> BoxFuture<'_, Result<(), OutboxError>> {
        let now = self.now();
        {
            let mut rows = self.rows.lock().expect("not poisoned");
            rows.next_seq += 1;
            let seq = rows.next_seq;
            rows.by_seq.insert(
                seq,
                Slot {
                    entry,
                    status: "pending",
                    attempts: 0,
                    last_error: None,
                    due: now,
                    claimed_until: 0,
                    published_at: 0,
                },
            );
        }
        self.saved.notify_one();
        Box::pin(async { Ok(()) })
    }

    fn claim(&self, lease: Duration, limit: u32) -> BoxFuture<'_, Result<Claim, OutboxError>> {
        let now = self.now();
        let token = now + millis(lease).max(1);
        let mut rows = self.rows.lock().expect("not poisoned");
        let mut keys_seen = HashSet::new();
        let mut claimed = Vec::new();
        for (seq, slot) in &mut rows.by_seq {
            if slot.status == "published" {
                continue;
            }
            // Only the first unpublished row of a key may go (rule 1).
            let first_of_key = slot
                .entry
                .key()
                .is_none_or(|k| keys_seen.insert(k.to_owned()));
            let due = slot.status == "pending" && slot.due <= now && slot.claimed_until <= now;
            if first_of_key && due && claimed.len() < limit as usize {
                slot.claimed_until = token;
                claimed.push(Row::new(*seq, slot.attempts, slot.entry.clone()));
            }
        }
        Box::pin(async move { Ok(Claim::new(claimed, token)) })
    }

    fn settle<'a>(
        &'a self,
        claim: Claim,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        let now = self.now();
        let mut rows = self.rows.lock().expect("not poisoned");
        let held = |slot: &Slot| slot.claimed_until == claim.token() && slot.status == "pending";
        for seq in settlement.published() {
            match rows.by_seq.get_mut(seq) {
                Some(slot) if held(slot) && settlement.keep_published() => {
                    (slot.status, slot.published_at, slot.claimed_until) = ("published", now, 0);
                }
                Some(slot) if held(slot) => {
                    rows.by_seq.remove(seq);
                }
                _ => {}
            }
        }
        for failure in settlement.failures() {
            if let Some(slot) = rows.by_seq.get_mut(&failure.seq()).filter(|s| held(s)) {
                slot.attempts += 1;
                slot.last_error = Some(failure.error().to_owned());
                slot.due = now + millis(failure.retry_in());
                slot.claimed_until = 0;
                slot.status = if failure.give_up() {
                    "failed"
                } else {
                    "pending"
                };
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn purge_published(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, OutboxError>> {
        let cutoff = self.now() - millis(older_than);
        let mut rows = self.rows.lock().expect("not poisoned");
        let before = rows.by_seq.len();
        rows.by_seq
            .retain(|_, s| !(s.status == "published" && s.published_at < cutoff));
        let purged = (before - rows.by_seq.len()) as u64;
        Box::pin(async move { Ok(purged) })
    }

    fn saved(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.saved.notified())
    }
}
