//! What the buckets hold when there is no server: checkpoints, signals,
//! streamed output, each stream's sequence, and the clock they are
//! stamped by. `TestApp` reads them in virtual time (a signal not sent yet
//! never comes); an app on `memory://` in real time (a wait waits).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::watch;

use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::protocol::checkpoints::Checkpoints;
use crate::protocol::signals::{self, Signals};
use crate::protocol::streamed::{self, Output, Streamed};

/// The buckets in memory. See the [module docs](self).
pub(crate) struct Log {
    /// Waits are real: a signal is waited for, output is followed live.
    real_time: bool,
    /// Checkpoints by key: they outlive a run, as in the bucket.
    checkpoints: Mutex<HashMap<String, Bytes>>,
    /// Signals sent, by key, with when.
    signals: Mutex<HashMap<String, (Bytes, SystemTime)>>,
    /// Streamed output in the order it was written: each entry's number,
    /// key and value.
    streamed: Mutex<Vec<(u64, String, Bytes)>>,
    sequences: Mutex<HashMap<String, u64>>,
    /// What publishes, letters and signals are stamped with, and every
    /// virtual wait moves on; the system's when none.
    clock: Mutex<Option<ManualClock>>,
    /// Counts every signal and every streamed item, for those waiting.
    changes: watch::Sender<u64>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Log {
    /// Buckets read in virtual time (`TestApp`).
    pub(crate) fn virtual_time() -> Log {
        Log::new(false)
    }

    /// Buckets read in real time (an app on `memory://`).
    pub(crate) fn real_time() -> Log {
        Log::new(true)
    }

    fn new(real_time: bool) -> Log {
        Log {
            real_time,
            checkpoints: Mutex::default(),
            signals: Mutex::default(),
            streamed: Mutex::default(),
            sequences: Mutex::default(),
            clock: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }

    pub(crate) fn set_clock(&self, clock: ManualClock) {
        *lock(&self.clock) = Some(clock);
    }

    pub(crate) fn now(&self) -> SystemTime {
        lock(&self.clock)
            .as_ref()
            .map_or_else(SystemTime::now, Clock::now)
    }

    /// A virtual wait of `delay`: the clock, if one was given, moves on.
    pub(crate) fn wait(&self, delay: Duration) {
        if let Some(clock) = lock(&self.clock).as_ref() {
            clock.advance(delay);
        }
    }

    /// The next sequence of `stream`, from 1.
    pub(crate) fn next_sequence(&self, stream: &str) -> u64 {
        let mut seqs = lock(&self.sequences);
        let n = seqs.entry(stream.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// Stores signal `key`, stamped now.
    pub(crate) fn signal(&self, key: String, value: Bytes) {
        lock(&self.signals).insert(key, (value, self.now()));
        self.changes.send_modify(|n| *n += 1);
    }

    fn signal_for(&self, key: &str, published: SystemTime) -> Option<Bytes> {
        lock(&self.signals)
            .get(key)
            .filter(|(_, sent)| signals::fresh(*sent, published))
            .map(|(value, _)| value.clone())
    }

    /// What was streamed under `keys` (those of one message and handler),
    /// in order.
    pub(crate) fn output(&self, keys: &str) -> Vec<Output> {
        self.output_after(keys, 0)
            .into_iter()
            .map(|(_, o)| o)
            .collect()
    }

    /// The items under `keys` written after item number `after`, with
    /// their numbers.
    fn output_after(&self, keys: &str, after: u64) -> Vec<(u64, Output)> {
        lock(&self.streamed)
            .iter()
            .filter(|(n, _, _)| *n > after)
            .filter_map(|(n, key, value)| {
                streamed::parse(keys, key, value.clone()).map(|o| (*n, o))
            })
            .collect()
    }

    /// Every item under `keys` from the first, then each as it is
    /// written, until an end after which no delivery follows.
    pub(crate) fn follow(
        self: &Arc<Log>,
        keys: String,
    ) -> BoxStream<'static, Result<Output, Error>> {
        let changes = self.changes.subscribe();
        let items = futures_util::stream::unfold(
            (self.clone(), changes, 0u64, Vec::new().into_iter()),
            move |(log, mut changes, mut seen, mut ready)| {
                let keys = keys.clone();
                async move {
                    loop {
                        if let Some((n, item)) = ready.next() {
                            seen = n;
                            return Some((Ok(item), (log, changes, seen, ready)));
                        }
                        changes.mark_unchanged();
                        let found = log.output_after(&keys, seen);
                        if found.is_empty() {
                            changes.changed().await.ok()?;
                        }
                        ready = found.into_iter();
                    }
                }
            },
        );
        streamed::until_last(items.boxed()).boxed()
    }
}

impl Streamed for Log {
    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        {
            let mut streamed = lock(&self.streamed);
            let n = streamed.last().map_or(0, |(n, _, _)| *n) + 1;
            // A key written again replaces its value and goes last, as in
            // the bucket.
            streamed.retain(|(_, k, _)| *k != key);
            streamed.push((n, key, value));
        }
        self.changes.send_modify(|n| *n += 1);
        Box::pin(async { Ok(()) })
    }
}

impl Signals for Log {
    fn send(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        self.signal(key, value);
        Box::pin(async { Ok(()) })
    }

    /// In virtual time a signal not sent yet never comes, so the timeout
    /// passes at once; in real time it is waited for.
    fn wait(
        &self,
        key: String,
        published: SystemTime,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        Box::pin(async move {
            if !self.real_time {
                return Ok(self.signal_for(&key, published));
            }
            let mut changes = self.changes.subscribe();
            let found = tokio::time::timeout(timeout, async {
                loop {
                    changes.mark_unchanged();
                    if let Some(value) = self.signal_for(&key, published) {
                        return value;
                    }
                    if changes.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            })
            .await;
            Ok(found.ok())
        })
    }
}

impl Checkpoints for Log {
    fn save(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        lock(&self.checkpoints).insert(key, value);
        Box::pin(async { Ok(()) })
    }

    fn load(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        let found = lock(&self.checkpoints).get(&key).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn remove(&self, key: String) -> BoxFuture<'_, ()> {
        lock(&self.checkpoints).remove(&key);
        Box::pin(async {})
    }
}
