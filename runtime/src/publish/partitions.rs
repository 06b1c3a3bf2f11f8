//! Where a keyed message goes: to partition `partition_of(key, N)` of its
//! subject when the stream that captures the subject records it as
//! partitioned into `N` (see [`crate::partition`]), else to the subject.
//! What each subject's stream records is looked up once and kept a few
//! seconds, so only the first keyed publish to a subject pays for it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;

use crate::partition;
use crate::publish::message::KEY;

/// How long what a stream records of a subject is trusted.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// The most subjects remembered; past it the memory starts afresh.
const MOST_SUBJECTS: usize = 4096;

/// The partition counts of the subjects keyed messages went to.
#[derive(Default)]
pub(crate) struct Partitions {
    known: Mutex<HashMap<String, (Option<u32>, Instant)>>,
}

impl Partitions {
    /// The subject (prefixed) a message with `headers` goes to: its
    /// partition's when it has a key and `subject` is partitioned.
    pub(crate) async fn route(
        &self,
        js: &jetstream::Context,
        subject: String,
        headers: &HeaderMap,
    ) -> String {
        let Some(key) = headers.get(KEY) else {
            return subject;
        };
        match self.count(js, &subject).await {
            Some(n) => {
                partition::partition_subject(&subject, partition::partition_of(key.as_str(), n))
            }
            None => subject,
        }
    }

    async fn count(&self, js: &jetstream::Context, subject: &str) -> Option<u32> {
        if let Some((n, at)) = self.lock().get(subject)
            && at.elapsed() < FRESH_FOR
        {
            return *n;
        }
        let n = lookup(js, subject).await;
        let mut known = self.lock();
        if known.len() >= MOST_SUBJECTS {
            known.clear();
        }
        known.insert(subject.to_owned(), (n, Instant::now()));
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<u32>, Instant)>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the stream capturing `subject` records of it. A stream that
/// cannot be found records nothing: the publish then fails or stores the
/// message unpartitioned, as it would without a key.
async fn lookup(js: &jetstream::Context, subject: &str) -> Option<u32> {
    let name = js.stream_by_subject(subject).await.ok()?;
    let stream = js.get_stream(&name).await.ok()?;
    partition::recorded(&stream.cached_info().config.metadata, subject)
}
