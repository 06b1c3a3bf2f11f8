//! Where the records of [`policy::runs`] live: one key-value bucket per
//! deployment, a key per message that has one, removed when the message
//! is settled.
//!
//! Only a redelivery reads its record, and only a hand-back writes one;
//! the start of a last run is marked in its loop's record instead
//! ([`begun`]). So the common delivery (the first, of a handler allowed
//! more than one) never touches the bucket.
//!
//! [`policy::runs`]: crate::policy::runs

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};

use crate::error::Error;
use crate::names;
use crate::policy::runs::{self, Record};
use crate::protocol::begun::{self, Begun};
use crate::protocol::removal;

/// A record nobody removed (its message purged by an operator, say) goes
/// after this. A record that went too soon only makes a message run once
/// more than `max_deliver` allows, never run less.
const RECORDS_KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Room for the longest record: a loop's marks of last runs begun.
pub(crate) const RECORD_SIZE: i32 = begun::SHEET_SIZE;

/// One message's place in the bucket.
#[derive(Debug, Clone)]
pub(crate) struct RunKey {
    stream: Arc<str>,
    durable: Arc<str>,
    sequence: u64,
    /// When the server stored the message: a record is its own only if it
    /// says the same.
    stored_at: SystemTime,
}

impl RunKey {
    pub(crate) fn new(
        (stream, durable): (&Arc<str>, &Arc<str>),
        sequence: u64,
        stored_at: SystemTime,
    ) -> Self {
        RunKey {
            stream: stream.clone(),
            durable: durable.clone(),
            sequence,
            stored_at,
        }
    }

    /// The message's stream sequence.
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Its key, written out only when the bucket is read or written.
    fn key(&self) -> String {
        names::run_key(&self.stream, &self.durable, self.sequence)
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
    /// Its records are written to `put_prefix` and the key (the bucket's
    /// subjects, or the same behind a JetStream domain's API prefix).
    pub(crate) async fn ensure(
        js: &jetstream::Context,
        (prefix, put_prefix): (Option<&str>, String),
        create: bool,
        (replicas, storage): (usize, jetstream::stream::StorageType),
    ) -> Result<Runs, Error> {
        let bucket = names::runs_bucket(prefix);
        // One subject for every write, async-nats's puts and the loops'
        // records alike.
        let writes_to = |mut store: kv::Store| {
            store.put_prefix = Some(put_prefix.clone());
            store.use_jetstream_prefix = false;
            store
        };
        if !create {
            let store = js.get_key_value(&bucket).await.map_err(|e| Error::Stream {
                stream: format!("KV_{bucket}"),
                reason: format!("cannot bind the bucket where deliveries are counted: {e}"),
            })?;
            check_room(&store)?;
            return Ok(Runs {
                store: Arc::new(writes_to(store)),
                js: js.clone(),
                create,
            });
        }
        let wanted = kv::Config {
            bucket: bucket.clone(),
            description: "jetwire: deliveries handed back unrun, and each loop's last runs begun"
                .into(),
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
        let store = make_room(js, store).await?;
        Ok(Runs {
            store: Arc::new(writes_to(store)),
            js: js.clone(),
            create,
        })
    }

    /// The message's record; none if it has none or it cannot be read (it
    /// then counts every earlier delivery as a run, the safe side).
    pub(crate) async fn read(&self, key: &RunKey) -> Record {
        match self.store.entry(key.key()).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Record::decode(&entry.value, key.stored_at)
            }
            Ok(_) => Record::default(),
            Err(e) => {
                tracing::warn!(key = key.key(), error = %e, "cannot read a delivery record; counting every earlier delivery as a run");
                Record::default()
            }
        }
    }

    /// Stores `record` and waits for the server: before a hand-back's nak,
    /// so that the redelivery reads it.
    async fn write(&self, key: &RunKey, record: Record) {
        let value = bytes::Bytes::from(record.encode(key.stored_at));
        if let Err(e) = self.store.put(key.key(), value.clone()).await {
            self.repair(&e.to_string()).await;
            // `repair` said why; unrecorded, the redelivery counts it as a run.
            let _ = self.store.put(key.key(), value).await;
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

    /// A record of the last runs a loop on `durable` of `stream` begins.
    pub(crate) fn begun(&self, stream: &str, durable: &str) -> Begun {
        let bucket = (self.store.clone(), self.js.clone(), self.create);
        Begun::new(bucket, stream, durable)
    }

    /// Whether a loop on the key's durable marked its message's last run
    /// begun (see [`begun::any_began`]).
    pub(crate) async fn any_began(&self, key: &RunKey) -> bool {
        let (stream, durable, sequence) = (&key.stream, &key.durable, key.sequence);
        begun::any_began(&self.store, stream, durable, sequence, key.stored_at).await
    }

    /// Removes the message's record without waiting, leaving nothing that
    /// lasts (see [`removal`]); a record left behind goes after a week.
    pub(crate) fn forget(&self, key: &RunKey) {
        removal::remove(&self.store, key.key(), "the delivery record");
    }

    /// A write failed: the bucket may have been deleted under the app.
    async fn repair(&self, error: &str) {
        begun::repair(&self.js, &self.store, self.create, error).await;
    }
}

/// Whether the bucket takes a record as long as [`RECORD_SIZE`]; made by
/// an older jetwire, it may not.
fn has_room(store: &kv::Store) -> bool {
    let limit = store.stream.cached_info().config.max_message_size;
    limit <= 0 || limit >= RECORD_SIZE
}

/// Fails startup under `bind` when the bucket's values are too small for
/// the marks of last runs begun, naming the fix.
fn check_room(store: &kv::Store) -> Result<(), Error> {
    if has_room(store) {
        return Ok(());
    }
    Err(Error::Stream {
        stream: store.stream_name.clone(),
        reason: format!(
            "its values may be at most {} bytes, and the marks of last runs begun need {RECORD_SIZE}: start once with JETWIRE_PROVISION=create, or raise it (`nats stream edit {} --max-msg-size {RECORD_SIZE}`)",
            store.stream.cached_info().config.max_message_size,
            store.stream_name
        ),
    })
}

/// Raises the bucket's value size to [`RECORD_SIZE`] where it is less.
async fn make_room(js: &jetstream::Context, store: kv::Store) -> Result<kv::Store, Error> {
    if has_room(&store) {
        return Ok(store);
    }
    let mut wanted = store.stream.cached_info().config.clone();
    wanted.max_message_size = RECORD_SIZE;
    let fail = |e: String| Error::Stream {
        stream: store.stream_name.clone(),
        reason: format!(
            "cannot raise its value size to {RECORD_SIZE} bytes for the marks of last runs begun: {e}"
        ),
    };
    js.update_stream(wanted)
        .await
        .map_err(|e| fail(e.to_string()))?;
    js.get_key_value(&store.name)
        .await
        .map_err(|e| fail(e.to_string()))
}
