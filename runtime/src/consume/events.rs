//! What the server announces about a loop's durable that the loop acts on.

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use crate::consume::Shared;
use crate::names;

/// An advisory about the loop's own durable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ConsumerEvent {
    /// A new consumer leader (clustered servers): requests waiting at the
    /// old one are gone.
    LeaderElected,
    /// The durable was deleted: a request that reached the server as it
    /// went may never be answered, not even with an error.
    Deleted,
}

/// The durable's leader-elected and deleted advisories, or nothing if they
/// cannot be subscribed to (missed heartbeats still recover, in 10 s).
pub(super) async fn subscribe(shared: &Shared) -> BoxStream<'static, ConsumerEvent> {
    let (stream, durable) = (&shared.binding.route.stream, &shared.binding.route.durable);
    let mut subscribed = Vec::new();
    for (kind, event) in [
        ("LEADER_ELECTED", ConsumerEvent::LeaderElected),
        ("DELETED", ConsumerEvent::Deleted),
    ] {
        let subject = names::consumer_advisory(kind, stream, durable);
        match shared.client.subscribe(subject).await {
            Ok(sub) => subscribed.push(sub.map(move |_| event).boxed()),
            Err(e) => {
                tracing::debug!(error = %e, kind, "no consumer advisories; missed heartbeats still recover")
            }
        }
    }
    stream::select_all(subscribed)
        .chain(stream::pending())
        .boxed()
}
