//! The lag gauges (feature `metrics`): a handler's durable's pending and
//! ack-pending counts, read from the server every `metrics_interval`, not
//! per message; a partitioned handler's with its partitions' added.

use std::sync::Arc;

use async_nats::jetstream::consumer::PullConsumer;
use tokio_util::sync::CancellationToken;

use crate::consume::Shared;

/// A task of its own that reads the durable's info now and then and sets
/// the gauges; a failed read keeps the last values until the next.
pub(super) fn sample(
    shared: &Arc<Shared>,
    mut consumer: PullConsumer,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(shared.config.metrics_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match consumer.info().await {
                Ok(info) => {
                    let (pending, ack_pending) = partitions_lag(&shared).await;
                    shared.counters.metrics.lag(
                        info.num_pending + pending,
                        info.num_ack_pending as u64 + ack_pending,
                    );
                }
                Err(e) => {
                    tracing::debug!(handler = shared.binding.def.name, error = %e, "could not read the durable's backlog for the lag gauges");
                }
            }
        }
    })
}

/// The pending and ack-pending counts of a partitioned handler's
/// partitions (nothing for another handler); a partition that cannot be
/// read counts nothing this time.
async fn partitions_lag(shared: &Shared) -> (u64, u64) {
    let b = &shared.binding;
    let Some(n) = b.def.partitions() else {
        return (0, 0);
    };
    let Ok(stream) = shared.js.get_stream_no_info(&*b.route.stream).await else {
        return (0, 0);
    };
    let mut total = (0, 0);
    for i in 0..n {
        let durable = crate::partition::partition_durable(&b.route.durable, i);
        if let Ok(info) = stream.consumer_info(&durable).await {
            total.0 += info.num_pending;
            total.1 += info.num_ack_pending as u64;
        }
    }
    total
}
