//! The lag gauges (feature `metrics`): a handler's durable's pending and
//! ack-pending counts, read from the server every `metrics_interval`, not
//! per message.

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
                Ok(info) => shared
                    .counters
                    .metrics
                    .lag(info.num_pending, info.num_ack_pending as u64),
                Err(e) => {
                    tracing::debug!(handler = shared.binding.def.name, error = %e, "could not read the durable's backlog for the lag gauges");
                }
            }
        }
    })
}
