//! The worker directory: every running app instance keeps one record in
//! the deployment's key-value bucket `JETWIRE_WORKERS` (prefixed like its
//! streams), refreshed well within the bucket's max age. Shutdown deletes
//! it at once; a crashed instance's record ages out within the TTL.
//!
//! ```no_run
//! # async fn f() -> Result<(), jetwire::Error> {
//! let config = jetwire::Config::from_env()?;
//! for worker in jetwire::directory::list(&config).await? {
//!     println!("{} {} on {} (pid {})", worker.instance, worker.app, worker.host, worker.pid);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Provision};
use crate::error::Error;
use crate::handler::registry::{HandlerDef, Kind};
use crate::names;

/// One running app instance, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Worker {
    /// Unique per process start.
    pub instance: String,
    /// The app's name (`JETWIRE_APP`).
    pub app: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The jetwire it was built with.
    pub jetwire_version: String,
    /// The app's own version ([`App::version`](crate::App::version)).
    pub app_version: Option<String>,
    /// Its handlers.
    pub handlers: Vec<WorkerHandler>,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// The labels the app gave itself ([`App::label`](crate::App::label)):
    /// region, zone, build, ..
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One handler of a [`Worker`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerHandler {
    /// The handler's fn name.
    pub name: String,
    /// Its subject.
    pub subject: String,
    /// `subscribe` or `queue`.
    pub kind: String,
    /// Calls in flight per process.
    pub concurrency: u32,
}

/// Every instance registered in the deployment `config` names, oldest
/// first; empty when none has ever run. A record not refreshed within
/// `config.worker_ttl` is a crashed instance's, and left out even where
/// the bucket keeps it (one made without a max age).
pub async fn list(config: &Config) -> Result<Vec<Worker>, Error> {
    let (client, _) = config.connect().await?;
    list_on(
        &config.jetstream(client),
        config.prefix(),
        config.worker_ttl,
    )
    .await
}

/// [`list`] on a connection. A record that cannot be read fails the whole
/// listing (a caller keeps the view it had), rather than leave out a live
/// instance.
pub(crate) async fn list_on(
    js: &jetstream::Context,
    prefix: Option<&str>,
    fresh_within: Duration,
) -> Result<Vec<Worker>, Error> {
    let Ok(store) = js.get_key_value(names::workers_bucket(prefix)).await else {
        return Ok(Vec::new());
    };
    let mut keys = store
        .keys()
        .await
        .map_err(|e| Error::nats("listing the worker directory", e))?;
    let now = time::OffsetDateTime::now_utc();
    let mut workers = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| Error::nats("listing the worker directory", e))?;
        let entry = store
            .entry(&key)
            .await
            .map_err(|e| Error::nats("reading the worker directory", e))?;
        // Gone meanwhile (purged at a shutdown), stale, or foreign: skipped.
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            continue;
        };
        if now - entry.created > fresh_within {
            continue;
        }
        if let Ok(worker) = serde_json::from_slice::<Worker>(&entry.value) {
            workers.push(worker);
        }
    }
    workers.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(workers)
}

/// What an app says of itself in its record: its version and labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub(crate) version: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
}

/// This instance's record, kept in the bucket.
pub(crate) struct Registration {
    store: kv::Store,
    key: String,
    record: bytes::Bytes,
    every: Duration,
}

impl Registration {
    /// This process's record of `handlers`, and the bucket it goes to,
    /// made (under `create`) with `config.worker_ttl` as its max age.
    pub(crate) async fn open(
        js: &jetstream::Context,
        config: &Config,
        identity: &Identity,
        handlers: &[&'static HandlerDef],
    ) -> Result<Registration, Error> {
        let bucket = names::workers_bucket(config.prefix());
        let store = match config.provision {
            Provision::Bind => js.get_key_value(&bucket).await.map_err(|e| Error::Stream {
                stream: format!("KV_{bucket}"),
                reason: format!("cannot bind the worker directory: {e}"),
            })?,
            Provision::Create => create(js, config, &bucket).await?,
        };
        // Refresh three times per max age: one lost write never drops it.
        let ttl = match store.status().await {
            Ok(status) => status.max_age(),
            Err(_) => config.worker_ttl,
        };
        let worker = Worker {
            instance: uuid::Uuid::now_v7().to_string(),
            app: config.app.clone(),
            host: host(),
            pid: std::process::id(),
            jetwire_version: env!("CARGO_PKG_VERSION").to_owned(),
            app_version: identity.version.clone(),
            handlers: handlers.iter().map(|d| describe(d)).collect(),
            started_at: rfc3339(SystemTime::now()),
            labels: identity.labels.clone(),
        };
        let record = serde_json::to_vec(&worker).unwrap_or_default().into();
        let registration = Registration {
            store,
            key: worker.instance.clone(),
            record,
            every: (ttl / 3).max(Duration::from_millis(100)),
        };
        registration.put().await?;
        tracing::info!(instance = %worker.instance, bucket, ?ttl, "registered in the worker directory");
        Ok(registration)
    }

    /// This instance's id in the directory.
    pub(crate) fn instance(&self) -> &str {
        &self.key
    }

    async fn put(&self) -> Result<(), Error> {
        self.store
            .put(&self.key, self.record.clone())
            .await
            .map(|_| ())
            .map_err(|e| Error::nats("writing the worker directory", e))
    }

    /// Refreshes the record until `stop`, then deletes it.
    pub(crate) async fn keep(self, stop: CancellationToken) -> Result<(), Error> {
        let mut every =
            tokio::time::interval_at(tokio::time::Instant::now() + self.every, self.every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {
                    if let Err(e) = self.put().await {
                        tracing::debug!(error = %e, "could not refresh the worker directory; trying again");
                    }
                }
            }
        }
        // A server that is gone does not hold up shutdown: the record
        // then ages out.
        match tokio::time::timeout(Duration::from_secs(2), self.store.purge(&self.key)).await {
            Ok(Ok(())) => {}
            _ => tracing::debug!(
                "could not remove this instance from the worker directory; it ages out"
            ),
        }
        Ok(())
    }
}

async fn create(
    js: &jetstream::Context,
    config: &Config,
    bucket: &str,
) -> Result<kv::Store, Error> {
    let wanted = kv::Config {
        bucket: bucket.to_owned(),
        description: "jetwire: the running app instances".into(),
        history: 1,
        max_age: config.worker_ttl,
        storage: config.storage(),
        num_replicas: config.replicas(),
        ..Default::default()
    };
    match js.create_key_value(wanted).await {
        Ok(store) => Ok(store),
        Err(create) => js.get_key_value(bucket).await.map_err(|e| Error::Stream {
            stream: format!("KV_{bucket}"),
            reason: format!("cannot make the worker directory ({create}), nor bind it: {e}"),
        }),
    }
}

fn describe(def: &HandlerDef) -> WorkerHandler {
    WorkerHandler {
        name: def.name.to_owned(),
        subject: def.subject.to_owned(),
        kind: match def.kind {
            Kind::Subscribe => "subscribe",
            Kind::Queue => "queue",
        }
        .to_owned(),
        concurrency: def.concurrency(),
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The host's name: the kernel's, else `HOSTNAME`, else `unknown`.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
