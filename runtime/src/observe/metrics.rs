//! The metrics jetwire records, through the `metrics` facade (feature
//! `metrics`); without the feature every fn here is empty and every
//! type holds nothing, so the hot path pays nothing.
//!
//! Labels are bounded: a handler's name, a stream's name, an outcome, a
//! dead-letter reason. Never a message id, subject or payload.

// Without the feature the names and the outcome are never read.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

#[cfg(feature = "metrics")]
use std::time::Instant;

/// `jetwire_messages_received_total{handler}`.
pub(crate) const RECEIVED: &str = "jetwire_messages_received_total";
/// `jetwire_messages_settled_total{handler,outcome}`.
pub(crate) const SETTLED: &str = "jetwire_messages_settled_total";
/// `jetwire_dead_letters_total{handler,reason}`.
pub(crate) const DEAD_LETTERS: &str = "jetwire_dead_letters_total";
/// `jetwire_published_total{stream}`.
pub(crate) const PUBLISHED: &str = "jetwire_published_total";
/// `jetwire_handler_duration_seconds{handler}`.
pub(crate) const DURATION: &str = "jetwire_handler_duration_seconds";
/// `jetwire_handlers_in_flight{handler}`.
pub(crate) const IN_FLIGHT: &str = "jetwire_handlers_in_flight";
/// `jetwire_consumer_pending{handler}`.
pub(crate) const PENDING: &str = "jetwire_consumer_pending";
/// `jetwire_consumer_ack_pending{handler}`.
pub(crate) const ACK_PENDING: &str = "jetwire_consumer_ack_pending";

/// How a delivery was settled, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Ack,
    Nak,
    DeadLetter,
    Discard,
    /// The call paused: handed back, its run not counted.
    Pause,
    /// The call continued with a next step: acked.
    Continue,
    /// The call failed after its message was acknowledged.
    FailedAfterAck,
}

/// One handler's instruments, registered once when its loop starts, so
/// a message costs an atomic add, not a registry lookup.
#[derive(Clone)]
#[cfg_attr(not(feature = "metrics"), derive(Debug))]
pub(crate) struct HandlerMetrics {
    #[cfg(feature = "metrics")]
    handler: &'static str,
    #[cfg(feature = "metrics")]
    on: std::sync::Arc<Instruments>,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for HandlerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerMetrics")
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
struct Instruments {
    received: metrics::Counter,
    acked: metrics::Counter,
    naked: metrics::Counter,
    dead_lettered: metrics::Counter,
    discarded: metrics::Counter,
    paused: metrics::Counter,
    continued: metrics::Counter,
    failed_after_ack: metrics::Counter,
    duration: metrics::Histogram,
    in_flight: metrics::Gauge,
    pending: metrics::Gauge,
    ack_pending: metrics::Gauge,
}

impl HandlerMetrics {
    /// Registers `handler`'s instruments with the recorder installed now.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(handler: &'static str) -> HandlerMetrics {
        #[cfg(feature = "metrics")]
        {
            let settled = |outcome: &'static str| metrics::counter!(SETTLED, "handler" => handler, "outcome" => outcome);
            HandlerMetrics {
                handler,
                on: std::sync::Arc::new(Instruments {
                    received: metrics::counter!(RECEIVED, "handler" => handler),
                    acked: settled("ack"),
                    naked: settled("nak"),
                    dead_lettered: settled("dead_letter"),
                    discarded: settled("discard"),
                    paused: settled("pause"),
                    continued: settled("continue"),
                    failed_after_ack: settled("failed_after_ack"),
                    duration: metrics::histogram!(DURATION, "handler" => handler),
                    in_flight: metrics::gauge!(IN_FLIGHT, "handler" => handler),
                    pending: metrics::gauge!(PENDING, "handler" => handler),
                    ack_pending: metrics::gauge!(ACK_PENDING, "handler" => handler),
                }),
            }
        }
        #[cfg(not(feature = "metrics"))]
        HandlerMetrics {}
    }

    /// A delivery arrived.
    #[inline]
    pub(crate) fn received(&self) {
        #[cfg(feature = "metrics")]
        self.on.received.increment(1);
    }

    /// A delivery was settled so.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn settled(&self, how: Settled) {
        #[cfg(feature = "metrics")]
        match how {
            Settled::Ack => self.on.acked.increment(1),
            Settled::Nak => self.on.naked.increment(1),
            Settled::DeadLetter => self.on.dead_lettered.increment(1),
            Settled::Discard => self.on.discarded.increment(1),
            Settled::Pause => self.on.paused.increment(1),
            Settled::Continue => self.on.continued.increment(1),
            Settled::FailedAfterAck => self.on.failed_after_ack.increment(1),
        }
    }

    /// A delivery was dead-lettered for `reason` (settled as such, and
    /// counted by reason).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn dead_lettered(&self, reason: &'static str) {
        self.settled(Settled::DeadLetter);
        #[cfg(feature = "metrics")]
        dead_letter(self.handler, reason);
    }

    /// A call begins: in flight until the returned timer is dropped, which
    /// records its duration.
    #[inline]
    pub(crate) fn call(&self) -> CallTimer {
        #[cfg(feature = "metrics")]
        {
            self.on.in_flight.increment(1.0);
            CallTimer {
                on: self.on.clone(),
                since: Instant::now(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        CallTimer {}
    }

    /// The durable's backlog as the server last told it.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn lag(&self, pending: u64, ack_pending: u64) {
        #[cfg(feature = "metrics")]
        {
            // Gauges are f64: exact up to 2^53 messages.
            #[allow(clippy::cast_precision_loss)]
            {
                self.on.pending.set(pending as f64);
                self.on.ack_pending.set(ack_pending as f64);
            }
        }
    }
}

/// A call in flight; dropping it records the call's duration.
#[must_use = "the call is timed until this is dropped"]
pub(crate) struct CallTimer {
    #[cfg(feature = "metrics")]
    on: std::sync::Arc<Instruments>,
    #[cfg(feature = "metrics")]
    since: Instant,
}

#[cfg(feature = "metrics")]
impl Drop for CallTimer {
    fn drop(&mut self) {
        self.on.duration.record(self.since.elapsed().as_secs_f64());
        self.on.in_flight.decrement(1.0);
    }
}

/// A letter was stored for `handler`'s message (also from the advisory
/// path, which has no loop's instruments at hand: rare enough to look up).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn dead_letter(handler: &str, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(DEAD_LETTERS, "handler" => handler.to_owned(), "reason" => reason)
        .increment(1);
}

/// JetStream stored a message jetwire published into `stream`.
#[inline]
pub(crate) fn published(stream: &str) {
    published_many(stream, 1);
}

/// `count` messages stored in `stream` at once (a batch).
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn published_many(stream: &str, count: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(PUBLISHED, "stream" => stream.to_owned()).increment(count);
}
