//! Where a process marks the last runs it began ([`policy::runs`]): one
//! record per loop (one durable, in one process) in the delivery-record
//! bucket, holding every message whose last run the loop began and has
//! not settled, rewritten as that set changes.
//!
//! A run waits until a write holding its mark is stored. Writes go one at
//! a time, each carrying every change since the one before, so under load
//! one write marks all the runs that began during the last (a group
//! commit), and a settled message leaves the set in the next write without
//! a write of its own. The redelivery that follows a crash reads every
//! record of its durable, each process's, to find whether its last run
//! began: only a delivery that has had every run it is allowed pays that.
//!
//! A record is text: one `<sequence>-<stamp>` per mark, both base 36,
//! where the stamp is the low 32 bits of when the server stored the
//! message (so a record left from a deleted stream, whose sequences start
//! over, is not read as a mark of the new stream's message). A loop that
//! ends with nothing marked removes its record; one that crashed leaves it
//! until the bucket's `max_age`.
//!
//! [`policy::runs`]: crate::policy::runs

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::names;

/// Marks one loop may hold: past every `concurrency` allowed, so only
/// marks of calls that never settled (interrupted, fenced) are ever let go.
const MARKS_MAX: usize = 16_384;
/// A mark of a call that never settled is let go after this: its message
/// was delivered again long before (after `ack_wait`) and dead-lettered.
const MARK_KEPT: Duration = Duration::from_secs(24 * 60 * 60);
/// Changes between two looks for marks to let go of.
const PRUNE_EVERY: u64 = 4096;
/// The longest record: [`MARKS_MAX`] marks of at most 13 + 1 + 7 + 1
/// characters, rounded up.
pub(crate) const SHEET_SIZE: i32 = 384 * 1024;
/// How long a settled message's mark may wait for a write to carry it
/// away, when no new mark comes first.
const TIDY: Duration = Duration::from_millis(50);
/// Writes of one loop's record sent and not yet acked, at most.
const WRITES_AHEAD: usize = 4;
/// Records of one durable a lookup reads at most.
const SHEETS_READ_MAX: usize = 10_000;

/// One loop's record of the last runs it began.
pub(crate) struct Begun {
    inner: Arc<Inner>,
}

/// The bucket: its store, and how to make it again if deleted under the
/// app (whether it may be, `JETWIRE_PROVISION=create`).
pub(crate) type Bucket = (Arc<kv::Store>, jetstream::Context, bool);

struct Inner {
    store: Arc<kv::Store>,
    js: jetstream::Context,
    create: bool,
    key: String,
    sheet: Mutex<Sheet>,
    /// A mark waits to be written; the loop ended.
    wake: Notify,
    /// A mark went: the next write may wait.
    tidy: Notify,
}

#[derive(Default)]
struct Sheet {
    /// Sequence → (stamp, when the run began).
    marks: BTreeMap<u64, (u32, Instant)>,
    /// Changes made so far.
    changes: u64,
    /// The runs waiting for their marks, in the order they began: each
    /// with the change that made its mark.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    ended: bool,
}

impl std::fmt::Debug for Begun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Begun")
            .field("key", &self.inner.key)
            .finish()
    }
}

impl Begun {
    /// The record of a loop on `durable` of `stream`, under a key of its
    /// own; its writer runs until the record is dropped.
    pub(crate) fn new((store, js, create): Bucket, stream: &str, durable: &str) -> Begun {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let inner = Arc::new(Inner {
            store,
            js,
            create,
            key: names::begun_key(stream, durable, &id),
            sheet: Mutex::new(Sheet::default()),
            wake: Notify::new(),
            tidy: Notify::new(),
        });
        tokio::spawn(write_changes(inner.clone()));
        Begun { inner }
    }

    /// Marks the last run of the message at `sequence`, stored at
    /// `stored_at`, begun, and waits until a write holding the mark is
    /// stored (or failed: a mark that cannot be stored lets the run go
    /// ahead).
    pub(crate) async fn begin(&self, sequence: u64, stored_at: SystemTime) {
        let (stored, mark) = oneshot::channel();
        {
            let mut sheet = self.inner.sheet.lock().expect("not poisoned");
            sheet
                .marks
                .insert(sequence, (stamp(stored_at), Instant::now()));
            sheet.changes += 1;
            let mine = sheet.changes;
            sheet.waiting.push_back((mine, stored));
            if mine.is_multiple_of(PRUNE_EVERY) || sheet.marks.len() > MARKS_MAX {
                sheet.let_go_of_stale();
            }
        }
        self.inner.wake.notify_one();
        // Woken in the order the runs began, so calls that wait on one
        // write start in the order they came.
        let _ = mark.await;
    }

    /// The message at `sequence` is settled: its mark goes with the next
    /// write, which nothing waits for (the next mark's, or one [`TIDY`]
    /// later).
    pub(crate) fn end(&self, sequence: u64) {
        let mut sheet = self.inner.sheet.lock().expect("not poisoned");
        if sheet.marks.remove(&sequence).is_some() {
            sheet.changes += 1;
            drop(sheet);
            self.inner.tidy.notify_one();
        }
    }
}

impl Drop for Begun {
    fn drop(&mut self) {
        self.inner.sheet.lock().expect("not poisoned").ended = true;
        self.inner.wake.notify_one();
    }
}

impl Sheet {
    /// Drops marks of calls that never settled, once old or too many.
    fn let_go_of_stale(&mut self) {
        let now = Instant::now();
        self.marks
            .retain(|_, (_, began)| now.duration_since(*began) < MARK_KEPT);
        while self.marks.len() > MARKS_MAX {
            self.marks.pop_first();
        }
    }

    fn encode(&self) -> String {
        let mut out = String::with_capacity(self.marks.len() * 16);
        for (sequence, (stamp, _)) in &self.marks {
            if !out.is_empty() {
                out.push(' ');
            }
            push_base36(&mut out, *sequence);
            out.push('-');
            push_base36(&mut out, u64::from(*stamp));
        }
        out
    }
}

/// Writes the sheet each time it changed, up to [`WRITES_AHEAD`] writes
/// at once, until the loop ends; then removes the record it wrote if
/// nothing is marked.
///
/// Each write is sent before the next is made, in order on one connection
/// to one stream, so the server stores them in order and the record ends
/// as the last one sent (sent from futures polled together, they could
/// overtake each other, and an older record land last); and each holds
/// every mark still set, so the ack of one covers every change it was
/// sent after.
async fn write_changes(inner: Arc<Inner>) {
    let mut acks: FuturesOrdered<Sent> = FuturesOrdered::new();
    let mut sent = 0;
    let mut tidy_at = None;
    loop {
        let tidy = async {
            match tidy_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some((changes, acked)) = acks.next(), if !acks.is_empty() => {
                let changes = match acked {
                    Ok(()) => changes,
                    Err(e) => inner.write_again(&e).await,
                };
                inner.release(changes);
            }
            () = inner.wake.notified(), if acks.len() < WRITES_AHEAD => {
                let (changes, value, ended) = inner.snapshot();
                if changes > sent {
                    sent = changes;
                    tidy_at = None;
                    acks.push_back(inner.send(value, changes).await);
                }
                if ended {
                    break;
                }
            }
            () = inner.tidy.notified(), if tidy_at.is_none() => {
                tidy_at = Some(Instant::now() + TIDY);
            }
            () = tidy => {
                tidy_at = None;
                inner.wake.notify_one();
            }
        }
    }
    while let Some((changes, acked)) = acks.next().await {
        if let Err(e) = acked {
            tracing::debug!(key = inner.key, error = %e, changes, "a last write of the marks of last runs begun failed");
        }
    }
    // A loop that never marked a run wrote no record: nothing to remove.
    if sent > 0
        && inner.sheet.lock().expect("not poisoned").marks.is_empty()
        && let Err(e) = inner.store.purge(&inner.key).await
    {
        tracing::debug!(key = inner.key, error = %e, "cannot remove an empty record of last runs begun; it ages out");
    }
}

/// One write sent: the change it holds, and whether the server stored it.
type Sent = std::pin::Pin<Box<dyn Future<Output = (u64, Result<(), String>)> + Send>>;

impl Inner {
    /// Lets every run whose mark came with `changes` or before go ahead.
    fn release(&self, changes: u64) {
        let mut sheet = self.sheet.lock().expect("not poisoned");
        while sheet
            .waiting
            .front()
            .is_some_and(|(mine, _)| *mine <= changes)
        {
            if let Some((_, run)) = sheet.waiting.pop_front() {
                let _ = run.send(());
            }
        }
    }

    /// The sheet's changes so far, its stored form, and whether the loop
    /// ended.
    fn snapshot(&self) -> (u64, bytes::Bytes, bool) {
        let sheet = self.sheet.lock().expect("not poisoned");
        (sheet.changes, sheet.encode().into(), sheet.ended)
    }

    /// Sends the record holding `changes`, in order after every write
    /// sent before it; the future it gives waits for its ack.
    async fn send(&self, value: bytes::Bytes, changes: u64) -> Sent {
        let prefix = self.store.put_prefix.as_ref().unwrap_or(&self.store.prefix);
        let subject = format!("{prefix}{}", self.key);
        match self.js.publish(subject, value).await {
            Ok(ack) => {
                Box::pin(async move { (changes, ack.await.map(drop).map_err(|e| e.to_string())) })
            }
            Err(e) => {
                let e = e.to_string();
                Box::pin(async move { (changes, Err(e)) })
            }
        }
    }

    /// A write failed with `error`: makes the bucket again if it went, and
    /// writes the sheet as it is now; the changes that covers (stored or
    /// not: a mark that cannot be stored lets its run go ahead).
    async fn write_again(&self, error: &str) -> u64 {
        repair(&self.js, &self.store, self.create, error).await;
        let (changes, value, _) = self.snapshot();
        if let Err(e) = self.store.put(&self.key, value).await {
            tracing::warn!(key = self.key, error = %e, "cannot store the marks of last runs begun; those runs go ahead unmarked");
        }
        changes
    }
}

/// A write to the delivery-record bucket failed with `error`: the bucket
/// may have been deleted under the app. Makes it again if `create`.
pub(crate) async fn repair(js: &jetstream::Context, store: &kv::Store, create: bool, error: &str) {
    tracing::warn!(
        bucket = store.name,
        error,
        "cannot write a delivery record; making sure the bucket exists"
    );
    if !create {
        return;
    }
    let stream = store.stream.cached_info().config.clone();
    if let Err(e) = js.get_or_create_stream(stream).await {
        tracing::warn!(error = %e, "the delivery-record bucket cannot be made again");
    }
}

/// Whether any loop on `durable` of `stream` marked the last run of the
/// message at `sequence`, stored at `stored_at`, begun. A record that
/// cannot be read counts as none, as a per-message record does: the run
/// goes ahead.
pub(crate) async fn any_began(
    store: &kv::Store,
    stream: &str,
    durable: &str,
    sequence: u64,
    stored_at: SystemTime,
) -> bool {
    let subject = format!("{}{}", store.prefix, names::begun_keys(stream, durable));
    let wanted = stamp(stored_at);
    let mut from = 1;
    for _ in 0..SHEETS_READ_MAX {
        match store
            .stream
            .direct_get_next_for_subject(subject.as_str(), Some(from))
            .await
        {
            Ok(record) => {
                if holds(&record.payload, sequence, wanted) {
                    return true;
                }
                from = record.sequence + 1;
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the marks of last runs begun; counting this run as not begun");
                return false;
            }
        }
    }
    false
}

/// Whether the record `bytes` marks the message at `sequence` with
/// `stamp`; unreadable marks are none.
fn holds(bytes: &[u8], sequence: u64, stamp: u32) -> bool {
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    text.split(' ').any(|mark| {
        mark.split_once('-').is_some_and(|(s, t)| {
            u64::from_str_radix(s, 36) == Ok(sequence)
                && u64::from_str_radix(t, 36) == Ok(u64::from(stamp))
        })
    })
}

/// The low 32 bits of the nanoseconds since the epoch at `at`.
fn stamp(at: SystemTime) -> u32 {
    let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    (nanos & u128::from(u32::MAX)) as u32
}

fn push_base36(out: &mut String, mut n: u64) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(marks: &[(u64, u32)]) -> Sheet {
        let now = Instant::now();
        Sheet {
            marks: marks.iter().map(|&(s, t)| (s, (t, now))).collect(),
            ..Sheet::default()
        }
    }

    #[test]
    fn a_record_holds_its_marks_and_no_other() {
        let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let marks = [(1, stamp(at)), (u64::MAX, u32::MAX), (36, 0)];
        let text = sheet(&marks).encode();
        for (sequence, stamp) in marks {
            assert!(holds(text.as_bytes(), sequence, stamp), "{text}");
        }
        assert!(!holds(text.as_bytes(), 1, stamp(at) ^ 1));
        assert!(!holds(text.as_bytes(), 2, stamp(at)));
        for junk in [&b""[..], b"-", b"1-", b"zzzzzzzzzzzzzz-1", b"\xff\xfe 1"] {
            assert!(!holds(junk, 1, 0));
        }
    }

    #[test]
    fn the_fullest_record_fits_the_bucket() {
        let full: Vec<_> = (0..MARKS_MAX as u64)
            .map(|i| (u64::MAX - i, u32::MAX))
            .collect();
        let text = sheet(&full).encode();
        assert!(text.len() < SHEET_SIZE as usize, "{}", text.len());
    }

    #[test]
    fn stale_and_surplus_marks_are_let_go() {
        let mut s = sheet(&[]);
        let old = Instant::now().checked_sub(MARK_KEPT + Duration::from_secs(1));
        if let Some(old) = old {
            s.marks.insert(7, (0, old));
        }
        for i in 0..=MARKS_MAX as u64 {
            s.marks.insert(100 + i, (0, Instant::now()));
        }
        s.let_go_of_stale();
        assert_eq!(s.marks.len(), MARKS_MAX);
        assert!(!s.marks.contains_key(&7));
        assert!(!s.marks.contains_key(&100));
    }
}
