//! Which replica reads which partition. Every replica of an app reads the
//! worker directory and gives each partition to one of the live replicas
//! that run its handler ([`partition::owner`], rendezvous hashing, so all
//! agree and a replica leaving moves only its own partitions). A replica
//! pulls from the partitions it owns; when one moves away it finishes the
//! call in flight, stops pulling and releases the server's pin, so the
//! new owner takes over at once. The pin is what keeps two replicas from
//! reading one partition while their views of the directory differ.
//!
//! A replica that crashes keeps its partitions until its directory record
//! ages out (`JETWIRE_WORKER_TTL`) and the server has moved the pin
//! (`ack_wait` without a pull); its call in flight comes back after
//! `ack_wait`, before anything after it in its partition.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consume::Shared;
use crate::partition;
use crate::protocol::pull::PIN_GROUP;

/// The replicas the directory lists, as one replica sees them.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// This replica's instance id.
    me: String,
    /// Each live replica of the app: its instance id and what it reads.
    replicas: Vec<(String, Vec<Reads>)>,
}

/// What a replica reads: a handler, on its subject (a `{group}` handler's
/// as filled in for one group), as the directory records it. Replicas of
/// one app may run different groups: only those that read the same
/// subject share its partitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Reads {
    pub(crate) handler: String,
    pub(crate) subject: String,
}

impl Members {
    /// Whether this replica owns partition `index` (of durable `durable`)
    /// of what `reads` names.
    fn owns(&self, reads: &Reads, durable: &str, index: u32) -> bool {
        let runs: Vec<String> = self
            .replicas
            .iter()
            .filter(|(_, all)| all.contains(reads))
            .map(|(id, _)| id.clone())
            .collect();
        partition::owner(&runs, durable, index) == Some(self.me.as_str())
    }
}

/// Reads the directory every third of the worker TTL (at least every 5 s)
/// until `stop`, sending each view that changed. This replica is always a
/// member: before its own record shows, and if the directory cannot be read.
pub(crate) fn watch_members(
    js: jetstream::Context,
    config: &Config,
    me: String,
    handlers: Vec<Reads>,
    stop: CancellationToken,
) -> watch::Receiver<Arc<Members>> {
    let every = (config.worker_ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let app = config.app.clone();
    let ttl = config.worker_ttl;
    let prefix = config.prefix().map(str::to_owned);
    let mine = (me.clone(), handlers);
    let view = move |replicas: Vec<(String, Vec<Reads>)>| Members {
        me: me.clone(),
        replicas,
    };
    let (tx, rx) = watch::channel(Arc::new(view(vec![mine.clone()])));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(workers) = crate::directory::list_on(&js, prefix.as_deref(), ttl).await else {
                continue;
            };
            let mut replicas: Vec<(String, Vec<Reads>)> = workers
                .into_iter()
                .filter(|w| w.app == app && w.instance != mine.0)
                .map(|w| {
                    let reads = w
                        .handlers
                        .into_iter()
                        .map(|h| Reads {
                            handler: h.name,
                            subject: h.subject,
                        })
                        .collect();
                    (w.instance, reads)
                })
                .chain([mine.clone()])
                .collect();
            replicas.sort();
            if tx.borrow().replicas != replicas {
                tracing::debug!(replicas = replicas.len(), "the app's replicas changed");
                tx.send_replace(Arc::new(view(replicas)));
            }
        }
    });
    rx
}

/// Runs partition `shared.binding.partition`'s loop while this replica
/// owns it, until `stop`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    consumer: jetstream::consumer::PullConsumer,
    stop: CancellationToken,
    abort: CancellationToken,
    mut members: watch::Receiver<Arc<Members>>,
) {
    let b = &shared.binding;
    let (handler, index) = (b.def.name, b.partition.unwrap_or_default());
    let durable = b.route.durable.clone();
    let reads = Reads {
        handler: handler.to_owned(),
        subject: b.def.subject.to_owned(),
    };
    let owns = move |m: &Arc<Members>| m.owns(&reads, &durable, index);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            owned = members.wait_for(&owns) => if owned.is_err() { return },
        }
        tracing::info!(handler, partition = index, "reading the partition");
        let lease = stop.child_token();
        let mut watching = members.clone();
        let owns_now = owns.clone();
        let lost = {
            let lease = lease.clone();
            tokio::spawn(async move {
                let _ = watching.wait_for(|m| !owns_now(m)).await;
                lease.cancel();
            })
        };
        let pinned = super::run(shared.clone(), consumer.clone(), lease, abort.clone()).await;
        lost.abort();
        // Only a pin this replica holds: unpinning another's (the new
        // owner's, pinned already) would stall it for a while.
        if pinned {
            release(&shared).await;
        }
        if stop.is_cancelled() {
            return;
        }
        tracing::info!(
            handler,
            partition = index,
            "the partition moved to another replica"
        );
    }
}

/// Releases the server's pin, so the partition's new owner is pinned at
/// its next pull instead of after `ack_wait`. A server that does not
/// answer within a second does not hold up a shutdown.
async fn release(shared: &Shared) {
    let route = &shared.binding.route;
    let unpin = async {
        let stream = shared
            .js
            .get_stream_no_info(&*route.stream)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .unpin_consumer(&route.durable, PIN_GROUP)
            .await
            .map_err(|e| e.to_string())
    };
    let unpinned = tokio::time::timeout(Duration::from_secs(1), unpin)
        .await
        .unwrap_or_else(|_| Err("no answer within 1s".to_owned()));
    if let Err(error) = unpinned {
        tracing::debug!(durable = %route.durable, error, "could not release the pin; it moves after ack_wait");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(subject: &str) -> Reads {
        Reads {
            handler: "render".into(),
            subject: subject.into(),
        }
    }

    /// Replicas running different groups of one `{group}` handler never
    /// own each other's partitions: every partition of a group goes to a
    /// replica that reads that group.
    #[test]
    fn a_groups_partitions_go_to_replicas_of_that_group() {
        let (gpu, cpu) = (reads("queue.render.gpu"), reads("queue.render.cpu"));
        let replicas = vec![
            ("a".to_owned(), vec![gpu.clone()]),
            ("b".to_owned(), vec![cpu.clone()]),
        ];
        let a = Members {
            me: "a".into(),
            replicas: replicas.clone(),
        };
        let b = Members {
            me: "b".into(),
            replicas,
        };
        for index in 0..8 {
            assert!(a.owns(&gpu, "queue_render_gpu-p", index), "gpu {index}");
            assert!(!b.owns(&gpu, "queue_render_gpu-p", index));
            assert!(b.owns(&cpu, "queue_render_cpu-p", index), "cpu {index}");
            assert!(!a.owns(&cpu, "queue_render_cpu-p", index));
        }
    }
}
