//! Where signals wait: the deployment's key-value bucket `JETWIRE_SIGNALS`,
//! a key per message id and signal name. A signal is stored when it is
//! sent, so one sent before its handler waits is found at once. It is
//! never removed by a handler (every handler and app the message reaches
//! may wait for it, and reruns find it too): it ages out with the bucket's
//! `max_age`. A signal stored well before its message was published is
//! another message's, with the same id, and is passed over ([`fresh`]).

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::names;
use crate::protocol::kept::Kept;

/// The largest signal, in bytes.
pub(crate) const MAX_SIGNAL: usize = 128 * 1024;

/// Sending and awaiting signals.
pub(crate) trait Signals: Send + Sync + 'static {
    fn send(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>>;
    /// The value of the first signal under `key` sent for a message
    /// published at `published` ([`fresh`]), once it is there; `None` if
    /// `timeout` passed first.
    fn wait(
        &self,
        key: String,
        published: SystemTime,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;
}

/// The key of signal `name` for the message with id `message_id`: each
/// part written so that keys are one of a kind and bounded, however long
/// the id ([`names::key_part`]).
pub(crate) fn key(message_id: &str, name: &str) -> String {
    format!("{}.{}", names::key_part(message_id), names::key_part(name))
}

/// How much older than its message a signal may be and still be its: a
/// sender that learns the id from the publisher can send within moments
/// of the publish, and the two stream leaders' clocks may differ a little.
pub(crate) const SENT_BEFORE_AT_MOST: Duration = Duration::from_secs(2);

/// Whether a signal sent at `sent` belongs to a message published at
/// `published`: not one left from an older message with the same id.
pub(crate) fn fresh(sent: SystemTime, published: SystemTime) -> bool {
    sent + SENT_BEFORE_AT_MOST >= published
}

/// The live bucket, bound or made on first use.
pub(crate) struct Bucket(Kept);

impl Bucket {
    pub(crate) fn new(
        js: jetstream::Context,
        prefix: Option<&str>,
        create: Option<(usize, jetstream::stream::StorageType)>,
    ) -> Bucket {
        let name = names::signals_bucket(prefix);
        Bucket(Kept::new(
            js,
            name,
            "signals for handlers waiting on them",
            MAX_SIGNAL,
            create,
        ))
    }
}

impl Signals for Bucket {
    fn send(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.0.put(&key, value, "sending a signal").await })
    }

    fn wait(
        &self,
        key: String,
        published: SystemTime,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        Box::pin(async move {
            let store = self.0.store().await?;
            // With history: a signal already there comes first.
            let mut watch = store
                .watch_with_history(&key)
                .await
                .map_err(|e| Error::nats("waiting for a signal", e))?;
            let found = tokio::time::timeout(timeout, async {
                while let Some(entry) = watch.next().await {
                    match entry {
                        Ok(entry)
                            if entry.operation == kv::Operation::Put
                                && fresh(entry.created.into(), published) =>
                        {
                            return Ok(Some(entry.value));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(Error::nats("waiting for a signal", e)),
                    }
                }
                Ok(None)
            })
            .await;
            found.unwrap_or(Ok(None))
        })
    }
}
