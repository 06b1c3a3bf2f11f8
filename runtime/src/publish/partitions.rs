//! Where a keyed message goes: to partition `partition_of(key, N)` of its
//! subject when the stream that captures the subject records it as
//! partitioned into `N` (see [`crate::partition`]), else to the subject.
//! What each subject's stream records is looked up once and kept a few
//! seconds, so only the first keyed publish to a subject pays for it. A
//! lookup that fails (not a stream that is missing: the server not
//! answering) fails the publish, rather than send a key's message where
//! its partition's order would not hold.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;

use crate::error::BoxError;
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
    ) -> Result<String, BoxError> {
        let Some(key) = headers.get(KEY) else {
            return Ok(subject);
        };
        Ok(match self.count(js, &subject).await? {
            Some(n) => {
                partition::partition_subject(&subject, partition::partition_of(key.as_str(), n))
            }
            None => subject,
        })
    }

    async fn count(&self, js: &jetstream::Context, subject: &str) -> Result<Option<u32>, BoxError> {
        if let Some((n, at)) = self.lock().get(subject)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(*n);
        }
        let n = lookup(js, subject).await?;
        let mut known = self.lock();
        if known.len() >= MOST_SUBJECTS {
            known.clear();
        }
        known.insert(subject.to_owned(), (n, Instant::now()));
        Ok(n)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<u32>, Instant)>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the stream capturing `subject` records of it. No stream records
/// nothing: the publish then fails as it would without a key.
async fn lookup(js: &jetstream::Context, subject: &str) -> Result<Option<u32>, BoxError> {
    let name = match js.stream_by_subject(subject).await {
        Ok(name) => name,
        Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => {
            return Err(format!("cannot learn whether `{subject}` is partitioned: {e}").into());
        }
    };
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| format!("cannot learn whether `{subject}` is partitioned: {e}"))?;
    Ok(partition::recorded(
        &stream.cached_info().config.metadata,
        subject,
    ))
}
