//! [`Lock`]: a short lock between a deployment's apps, in a key-value
//! bucket. It is held by whoever created its key, released by deleting
//! that revision, and gone by itself after [`HELD_AT_MOST`] if its holder
//! died. For writes that read a whole config and write it back (a
//! stream's metadata), which the server cannot compare-and-set.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use crate::error::Error;
use crate::policy::RetryPause;

/// The longest a lock lasts: the bucket's max age.
pub(crate) const HELD_AT_MOST: Duration = Duration::from_secs(30);

/// A lock taken; [`Lock::release`] it.
pub(crate) struct Lock {
    store: kv::Store,
    key: String,
    revision: u64,
}

impl Lock {
    /// Takes lock `key` (letters, digits, `-`, `_`) of `bucket`, waiting
    /// while another app holds it, at most [`HELD_AT_MOST`] and a little
    /// more. The bucket is made, with these replicas and storage, if it
    /// is not there.
    pub(crate) async fn take(
        js: &jetstream::Context,
        bucket: &str,
        (replicas, storage): (usize, jetstream::stream::StorageType),
        key: &str,
    ) -> Result<Lock, Error> {
        let bucket = bucket.to_owned();
        let failed = |reason: String| Error::Stream {
            stream: format!("KV_{bucket}"),
            reason,
        };
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                let made = js
                    .create_key_value(kv::Config {
                        bucket: bucket.clone(),
                        description: "jetwire: short locks between apps".into(),
                        history: 1,
                        max_age: HELD_AT_MOST,
                        storage,
                        num_replicas: replicas,
                        ..Default::default()
                    })
                    .await;
                match made {
                    Ok(store) => store,
                    // Made meanwhile by another app: bind it.
                    Err(create) => js.get_key_value(&bucket).await.map_err(|e| {
                        failed(format!(
                            "cannot make the lock bucket ({create}), nor bind it: {e}"
                        ))
                    })?,
                }
            }
        };
        let deadline = Instant::now() + HELD_AT_MOST + Duration::from_secs(5);
        let mut pause = RetryPause::new();
        loop {
            match store.create(key, bytes::Bytes::new()).await {
                Ok(revision) => {
                    return Ok(Lock {
                        store,
                        key: key.to_owned(),
                        revision,
                    });
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if Instant::now() > deadline {
                        return Err(failed(format!(
                            "lock `{key}` stayed held for over {HELD_AT_MOST:?}: is another app stuck writing it?"
                        )));
                    }
                    tokio::time::sleep(pause.after_failure()).await;
                }
                Err(e) => return Err(failed(format!("cannot take lock `{key}`: {e}"))),
            }
        }
    }

    /// Lets the next app have it. A lock that cannot be released ages out.
    pub(crate) async fn release(self) {
        if let Err(e) = self
            .store
            .delete_expect_revision(&self.key, Some(self.revision))
            .await
        {
            tracing::debug!(error = %e, key = %self.key, "could not release a lock; it ages out");
        }
    }
}
