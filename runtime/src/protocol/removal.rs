//! Removing a key from one of jetwire's key-value buckets once its message
//! is settled, off the settling path and leaving nothing that lasts.
//!
//! Where the bucket allows per-message TTLs (NATS 2.11+; jetwire makes its
//! buckets so and turns it on in those it finds, where it may create), a
//! removal is a purge marker that rolls up the key's subject and expires
//! after a second: one stored publish, pipelined like any other. Elsewhere
//! it is the stream purge API, one request the server answers in turn.
//! Either way the caller does not wait: a key left behind (the process
//! ended first, the server refused) belongs to a settled message no other
//! delivery reads, and ages out with the bucket's `max_age`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::protocol::version;

/// How long a purge marker lives: the least the server allows.
const MARKER_TTL: Duration = Duration::from_secs(1);

/// `config` for a bucket whose removals are markers that expire.
pub(crate) fn with_markers(mut config: kv::Config) -> kv::Config {
    config.limit_markers = Some(MARKER_TTL);
    config
}

/// Makes the bucket of `config`, with expiring markers where the server
/// has them (2.11+), without them where not.
pub(crate) async fn create(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, jetstream::context::CreateKeyValueError> {
    let plain = config.clone();
    match js.create_key_value(with_markers(config)).await {
        Ok(store) => Ok(store),
        Err(e)
            if e.kind()
                == jetstream::context::CreateKeyValueErrorKind::LimitMarkersNotSupported =>
        {
            js.create_key_value(plain).await
        }
        Err(e) => Err(e),
    }
}

/// `store`, its stream allowed per-message TTLs if the server has them and
/// jetwire may change what it made (`may_change`); as it was otherwise.
pub(crate) async fn allow_markers(
    js: &jetstream::Context,
    store: kv::Store,
    may_change: bool,
) -> kv::Store {
    let config = &store.stream.cached_info().config;
    if config.allow_message_ttl || !may_change || !server_has_ttl(js) {
        return store;
    }
    let mut wanted = config.clone();
    wanted.allow_message_ttl = true;
    match js.update_stream(wanted).await {
        Ok(_) => js.get_key_value(&store.name).await.unwrap_or(store),
        Err(e) => {
            tracing::debug!(bucket = %store.name, error = %e, "cannot allow message TTLs in the bucket; its removals stay purge requests");
            store
        }
    }
}

/// Whether the server keeps per-message TTLs (2.11 or later).
fn server_has_ttl(js: &jetstream::Context) -> bool {
    version::at_least(&js.client().server_info().version, (2, 11))
}

/// Removes `key` from `store` without waiting for it; `what` names the
/// bucket's contents in the log line of a removal that failed.
pub(crate) fn remove(store: &Arc<kv::Store>, key: String, what: &'static str) {
    let store = store.clone();
    tokio::spawn(async move {
        let result = if store.stream.cached_info().config.allow_message_ttl {
            store
                .purge_with_ttl(&key, MARKER_TTL)
                .await
                .map_err(|e| e.to_string())
        } else {
            let subject = format!("{}{key}", store.prefix);
            store
                .stream
                .purge()
                .filter(subject)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            tracing::debug!(key, bucket = %store.name, error = %e, "cannot remove {what} of a settled message; it ages out");
        }
    });
}
