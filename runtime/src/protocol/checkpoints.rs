//! Where checkpoints live: the deployment's key-value bucket
//! `JETWIRE_CHECKPOINTS`, a key per message (its stream, durable,
//! sequence and stored time), made on the first checkpoint any handler saves. `TestApp`
//! keeps them in memory through the same [`Checkpoints`] trait.

use std::time::SystemTime;

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::names;
use crate::protocol::kept::Kept;

/// The largest checkpoint, in bytes: progress to resume from, not data.
pub(crate) const MAX_CHECKPOINT: usize = 128 * 1024;

/// Saving, reading and removing one message's checkpoint.
pub(crate) trait Checkpoints: Send + Sync + 'static {
    fn save(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>>;
    fn load(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;
    fn remove(&self, key: String) -> BoxFuture<'_, ()>;
}

/// The key of a message's checkpoint: where it sits and when it was
/// stored, so a message at the same sequence of a stream made again is
/// another message and never resumes from this one's checkpoint.
pub(crate) fn key(stream: &str, durable: &str, sequence: u64, published: SystemTime) -> String {
    let nanos = published
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}.{nanos}", names::run_key(stream, durable, sequence))
}

/// The live bucket, bound or made on first use.
pub(crate) struct Bucket(Kept);

impl Bucket {
    pub(crate) fn new(
        js: jetstream::Context,
        prefix: Option<&str>,
        create: Option<(usize, jetstream::stream::StorageType)>,
    ) -> Bucket {
        let name = names::checkpoints_bucket(prefix);
        Bucket(Kept::new(js, name, "checkpoints", MAX_CHECKPOINT, create))
    }
}

impl Checkpoints for Bucket {
    fn save(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.0.put(&key, value, "saving a checkpoint").await })
    }

    fn load(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        Box::pin(async move {
            self.0
                .store()
                .await?
                .get(&key)
                .await
                .map_err(|e| Error::nats("reading a checkpoint", e))
        })
    }

    fn remove(&self, key: String) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.0.remove(&key).await })
    }
}
