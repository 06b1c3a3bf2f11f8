//! Where the records of [`policy::runs`] live: one key-value bucket per
//! deployment, a key per message that has one, removed when the message
//! is settled.
//!
//! Only a redelivery reads its record, and only a hand-back or the start
//! of a last run writes one, so the common delivery (the first, of a
//! handler allowed more than one) never touches the bucket.
//!
//! [`policy::runs`]: crate::policy::runs

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};

use crate::error::Error;
use crate::names;
use crate::policy::runs::{self, Record};
use crate::protocol::removal;

/// A record nobody removed (its message purged by an operator, say) goes
/// after this. A record that went too soon only makes a message run once
/// more than `max_deliver` allows, never run less.
const RECORDS_KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Room for the longest record.
const RECORD_SIZE: i32 = 128;

/// One message's place in the bucket.
#[derive(Debug, Clone)]
pub(crate) struct RunKey {
    key: String,
    /// When the server stored the message: a record is its own only if it
    /// says the same.
    stored_at: SystemTime,
}

impl RunKey {
    pub(crate) fn new(stream: &str, durable: &str, sequence: u64, stored_at: SystemTime) -> Self {
        RunKey {
            key: names::run_key(stream, durable, sequence),
            stored_at,
        }
    }
}

/// The bucket, made at startup and again if deleted under a running app.
#[derive(Clone)]
pub(crate) struct Runs {
    store: Arc<kv::Store>,
    js: jetstream::Context,
    /// Whether it may be made again (`JETWIRE_PROVISION=create`).
    create: bool,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs")
            .field("bucket", &self.store.name)
            .finish()
    }
}

impl Runs {
    /// Binds the bucket of the deployment with subject prefix `prefix`,
    /// making it (if `create`) with `replicas` and `storage` if need be.
    pub(crate) async fn ensure(
        js: &jetstream::Context,
        prefix: Option<&str>,
        create: bool,
        (replicas, storage): (usize, jetstream::stream::StorageType),
    ) -> Result<Runs, Error> {
        let bucket = names::runs_bucket(prefix);
        if !create {
            let store = js.get_key_value(&bucket).await.map_err(|e| Error::Stream {
                stream: format!("KV_{bucket}"),
                reason: format!("cannot bind the bucket where deliveries are counted: {e}"),
            })?;
            return Ok(Runs {
                store: Arc::new(store),
                js: js.clone(),
                create,
            });
        }
        let wanted = kv::Config {
            bucket: bucket.clone(),
            description: "jetwire: deliveries handed back unrun, and last runs begun".into(),
            history: 1,
            max_age: RECORDS_KEPT,
            max_value_size: RECORD_SIZE,
            storage,
            num_replicas: replicas,
            ..Default::default()
        };
        let store = match removal::create(js, wanted).await {
            Ok(store) => store,
            // There already, perhaps made by another version: use it.
            Err(create) => js.get_key_value(&bucket).await.map_err(|e| Error::Stream {
                stream: format!("KV_{bucket}"),
                reason: format!(
                    "cannot make the bucket where deliveries are counted ({create}), nor bind it: {e}"
                ),
            })?,
        };
        let store = removal::allow_markers(js, store, true).await;
        Ok(Runs {
            store: Arc::new(store),
            js: js.clone(),
            create,
        })
    }

    /// The message's record; none if it has none or it cannot be read (it
    /// then counts every earlier delivery as a run, the safe side).
    pub(crate) async fn read(&self, key: &RunKey) -> Record {
        match self.store.entry(&key.key).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Record::decode(&entry.value, key.stored_at)
            }
            Ok(_) => Record::default(),
            Err(e) => {
                tracing::warn!(key = key.key, error = %e, "cannot read a delivery record; counting every earlier delivery as a run");
                Record::default()
            }
        }
    }

    /// Stores `record` and waits for the server: before a hand-back's nak,
    /// so that the redelivery reads it, and before a last run begins.
    pub(crate) async fn write(&self, key: &RunKey, record: Record) -> bool {
        let value = bytes::Bytes::from(record.encode(key.stored_at));
        match self.store.put(&key.key, value.clone()).await {
            Ok(_) => true,
            Err(e) => {
                self.repair(&e.to_string()).await;
                self.store.put(&key.key, value).await.is_ok()
            }
        }
    }

    /// Records one more hand-back of a delivery, the `deliveries`-th, whose
    /// record is `known` if it was read when the delivery was taken.
    pub(crate) async fn note_hand_back(
        &self,
        key: &RunKey,
        deliveries: u32,
        known: Option<Record>,
    ) {
        let record = match known {
            Some(record) => record,
            None if runs::needs_record(deliveries) => self.read(key).await,
            None => Record::default(),
        };
        self.write(key, record.handed_back()).await;
    }

    /// Removes the message's record without waiting, leaving nothing that
    /// lasts (see [`removal`]); a record left behind goes after a week.
    pub(crate) fn forget(&self, key: &RunKey) {
        removal::remove(&self.store, key.key.clone(), "the delivery record");
    }

    /// A write failed: the bucket may have been deleted under the app.
    async fn repair(&self, error: &str) {
        tracing::warn!(
            bucket = self.store.name,
            error,
            "cannot record a hand-back; making sure the bucket exists"
        );
        if !self.create {
            return;
        }
        let stream = self.store.stream.cached_info().config.clone();
        if let Err(e) = self.js.get_or_create_stream(stream).await {
            tracing::warn!(error = %e, "the delivery-record bucket cannot be made again");
        }
    }
}
