//! Where signals wait: the deployment's key-value bucket `JETWIRE_SIGNALS`,
//! a key per message id and signal name. A signal is stored when it is
//! sent, so one sent before its handler waits is found at once; it stays
//! until the message is settled, so a rerun of the handler finds it too.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::names;
use crate::protocol::kept::Kept;

/// The largest signal, in bytes.
pub(crate) const MAX_SIGNAL: usize = 128 * 1024;

/// Sending, awaiting and removing signals.
pub(crate) trait Signals: Send + Sync + 'static {
    fn send(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>>;
    /// The signal's value once it is there; `None` if `timeout` passed first.
    fn wait(&self, key: String, timeout: Duration) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;
    fn remove(&self, key: String) -> BoxFuture<'_, ()>;
}

/// The key of signal `name` for the message with id `message_id`.
pub(crate) fn key(message_id: &str, name: &str) -> String {
    names::run_key(message_id, name, 0)
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

    fn wait(&self, key: String, timeout: Duration) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
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
                        Ok(entry) if entry.operation == kv::Operation::Put => {
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

    fn remove(&self, key: String) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.0.remove(&key).await })
    }
}
