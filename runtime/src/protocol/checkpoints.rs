//! Where checkpoints live: the deployment's key-value bucket
//! `JETWIRE_CHECKPOINTS`, a key per message (its stream, durable and
//! sequence), made on the first checkpoint any handler saves. `TestApp`
//! keeps them in memory through the same [`Checkpoints`] trait.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::error::Error;
use crate::names;

/// The largest checkpoint, in bytes: progress to resume from, not data.
pub(crate) const MAX_CHECKPOINT: usize = 128 * 1024;
/// A checkpoint nobody removed (its message purged by an operator, say)
/// goes after this.
const KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Saving, reading and removing one message's checkpoint.
pub(crate) trait Checkpoints: Send + Sync + 'static {
    fn save(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>>;
    fn load(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;
    fn remove(&self, key: String) -> BoxFuture<'_, ()>;
}

/// The key of a message's checkpoint.
pub(crate) fn key(stream: &str, durable: &str, sequence: u64) -> String {
    names::run_key(stream, durable, sequence)
}

/// The live bucket, bound or made on first use.
pub(crate) struct Bucket {
    js: jetstream::Context,
    name: String,
    /// Whether it may be made (`JETWIRE_PROVISION=create`), with what.
    create: Option<(usize, jetstream::stream::StorageType)>,
    store: OnceCell<kv::Store>,
}

impl Bucket {
    pub(crate) fn new(
        js: jetstream::Context,
        prefix: Option<&str>,
        create: Option<(usize, jetstream::stream::StorageType)>,
    ) -> Bucket {
        Bucket {
            js,
            name: names::checkpoints_bucket(prefix),
            create,
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&kv::Store, Error> {
        self.store
            .get_or_try_init(|| async {
                if let Ok(store) = self.js.get_key_value(&self.name).await {
                    return Ok(store);
                }
                let Some((replicas, storage)) = self.create else {
                    return Err(Error::Stream {
                        stream: format!("KV_{}", self.name),
                        reason: format!(
                            "the checkpoint bucket `{}` does not exist and JETWIRE_PROVISION=bind makes nothing: create it (history 1, max value size {MAX_CHECKPOINT})",
                            self.name
                        ),
                    });
                };
                let wanted = kv::Config {
                    bucket: self.name.clone(),
                    description: "jetwire: checkpoints of messages being handled".into(),
                    history: 1,
                    max_age: KEPT,
                    max_value_size: MAX_CHECKPOINT as i32,
                    storage,
                    num_replicas: replicas,
                    ..Default::default()
                };
                match self.js.create_key_value(wanted).await {
                    Ok(store) => Ok(store),
                    Err(create) => self.js.get_key_value(&self.name).await.map_err(|e| {
                        Error::Stream {
                            stream: format!("KV_{}", self.name),
                            reason: format!("cannot make the checkpoint bucket ({create}), nor bind it: {e}"),
                        }
                    }),
                }
            })
            .await
    }
}

impl Checkpoints for Bucket {
    fn save(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.store()
                .await?
                .put(&key, value)
                .await
                .map(|_| ())
                .map_err(|e| Error::nats("saving a checkpoint", e))
        })
    }

    fn load(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        Box::pin(async move {
            self.store()
                .await?
                .get(&key)
                .await
                .map_err(|e| Error::nats("reading a checkpoint", e))
        })
    }

    fn remove(&self, key: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Ok(store) = self.store().await else {
                return;
            };
            if let Err(e) = store.purge(&key).await {
                tracing::warn!(error = %e, key, "could not remove a settled message's checkpoint; it ages out");
            }
        })
    }
}
