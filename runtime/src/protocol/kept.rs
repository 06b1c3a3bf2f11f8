//! A key-value bucket of things kept for a message while it is handled
//! (checkpoints, signals): bound on first use, or made then where jetwire
//! may create.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::OnceCell;

use crate::error::Error;
use crate::protocol::removal;

/// What is kept nobody removed (its message purged by an operator, say)
/// goes after this.
const KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most a bucket holds, in bytes; past it a write fails (a checkpoint
/// or signal is an error for its call), never silently dropping another.
pub(crate) const MAX_BYTES: i64 = 1 << 30;

/// The bucket, and how to make it.
pub(crate) struct Kept {
    js: jetstream::Context,
    pub(crate) name: String,
    /// What it holds, for its description and for errors.
    what: &'static str,
    max_value_size: usize,
    /// Whether it may be made (`JETWIRE_PROVISION=create`), with what.
    create: Option<(usize, jetstream::stream::StorageType)>,
    store: OnceCell<Arc<kv::Store>>,
}

impl Kept {
    pub(crate) fn new(
        js: jetstream::Context,
        name: String,
        what: &'static str,
        max_value_size: usize,
        create: Option<(usize, jetstream::stream::StorageType)>,
    ) -> Kept {
        Kept {
            js,
            name,
            what,
            max_value_size,
            create,
            store: OnceCell::new(),
        }
    }

    /// The bucket, bound or made now if this is its first use.
    pub(crate) async fn store(&self) -> Result<&kv::Store, Error> {
        let store = self.store.get_or_try_init(|| self.open()).await?;
        Ok(store)
    }

    async fn open(&self) -> Result<Arc<kv::Store>, Error> {
        let store = self.bind_or_make().await?;
        let may_change = self.create.is_some();
        Ok(Arc::new(
            removal::allow_markers(&self.js, store, may_change).await,
        ))
    }

    async fn bind_or_make(&self) -> Result<kv::Store, Error> {
        let (name, what) = (&self.name, self.what);
        let failed = |reason: String| Error::Stream {
            stream: format!("KV_{name}"),
            reason,
        };
        if let Ok(store) = self.js.get_key_value(name).await {
            return Ok(store);
        }
        let Some((replicas, storage)) = self.create else {
            return Err(failed(format!(
                "the bucket of {what} does not exist and JETWIRE_PROVISION=bind makes nothing: create `{name}` (history 1, max value size {})",
                self.max_value_size
            )));
        };
        let wanted = kv::Config {
            bucket: name.clone(),
            description: format!("jetwire: {what}"),
            history: 1,
            max_age: KEPT,
            max_value_size: i32::try_from(self.max_value_size).unwrap_or(i32::MAX),
            max_bytes: MAX_BYTES,
            storage,
            num_replicas: replicas,
            ..Default::default()
        };
        match removal::create(&self.js, wanted).await {
            Ok(store) => Ok(store),
            // Made meanwhile by another replica: bind it.
            Err(create) => self.js.get_key_value(name).await.map_err(|e| {
                failed(format!(
                    "cannot make the bucket of {what} ({create}), nor bind it: {e}"
                ))
            }),
        }
    }

    /// Writes `value` under `key`; `doing` names it in an error.
    pub(crate) async fn put(
        &self,
        key: &str,
        value: bytes::Bytes,
        doing: &str,
    ) -> Result<(), Error> {
        self.store()
            .await?
            .put(key, value)
            .await
            .map(|_| ())
            .map_err(|e| Error::nats(doing.to_owned(), e))
    }

    /// The bucket if it is bound or exists; never made for a removal.
    async fn existing(&self) -> Option<&Arc<kv::Store>> {
        if let Some(store) = self.store.get() {
            return Some(store);
        }
        let store = self.js.get_key_value(&self.name).await.ok()?;
        let may_change = self.create.is_some();
        let store = removal::allow_markers(&self.js, store, may_change).await;
        let _ = self.store.set(Arc::new(store));
        self.store.get()
    }

    /// Removes `key` without waiting, leaving nothing that lasts (see
    /// [`removal`]); a key left behind ages out.
    pub(crate) async fn remove(&self, key: &str) {
        if let Some(store) = self.existing().await {
            removal::remove(store, key.to_owned(), self.what);
        }
    }
}
