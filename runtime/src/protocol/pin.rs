//! A pinned loop's hold on its durable (a singleton's, a partition's):
//! the pin id the server gave it, and the fence the deliveries taken
//! under that pin stop on once it is lost. A loop of a `max_deliver = 1`
//! handler keeps the same clock without a pin: a delivery it held while
//! away may have been run by another replica since.
//!
//! The server moves the pin to a standby replica when the pinned one has
//! not pulled for `ack_wait`. A process that was paused (SIGSTOP, a
//! frozen VM) or starved that long cannot know whether it moved, and
//! what it had buffered before may be another replica's by then. So the
//! loop keeps a clock: a gap of more than half `ack_wait` between two
//! looks counts as away, and being away loses the pin here as a 423
//! would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

/// The priority group a singleton handler's replicas pull in: the server
/// pins one of them and delivers to it alone.
pub(crate) const PIN_GROUP: &str = "jetwire";
/// The header a pinned client's messages carry its pin id in.
const PIN_ID: &str = "Nats-Pin-Id";

/// A pinned loop's pin: the id the server gave it with its messages, sent
/// back with every request to keep it; none while on standby. And its
/// fence: cancelled when the pin is lost, so the deliveries taken under it
/// stop before another replica, pinned now, runs the same messages.
#[derive(Debug)]
pub(crate) struct PinId {
    held: Mutex<Held>,
    /// A gap between two looks longer than this counts as away.
    away_after: Duration,
}

#[derive(Debug)]
struct Held {
    id: Option<String>,
    fence: CancellationToken,
    /// The last look at the clock.
    looked: Instant,
    /// How many times the process was found away.
    aways: u64,
}

impl Default for PinId {
    fn default() -> PinId {
        PinId::new(Duration::from_secs(30))
    }
}

impl PinId {
    /// A pin not held yet, for a durable whose pin moves after `ack_wait`.
    pub(crate) fn new(ack_wait: Duration) -> PinId {
        PinId {
            held: Mutex::new(Held {
                id: None,
                fence: CancellationToken::new(),
                looked: Instant::now(),
                aways: 0,
            }),
            away_after: ack_wait / 2,
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.held.lock().ok().and_then(|pin| pin.id.clone())
    }

    /// Whether the server has pinned this loop.
    pub(crate) fn held(&self) -> bool {
        self.get().is_some()
    }

    /// What a delivery taken now stops on: the pin being lost.
    pub(crate) fn fence(self: &Arc<PinId>) -> Fence {
        let (token, aways) = self
            .held
            .lock()
            .map(|pin| (pin.fence.clone(), pin.aways))
            .unwrap_or_default();
        Fence {
            pin: self.clone(),
            token,
            aways,
        }
    }

    /// Records the pin the server gave (`Some`) or took (`None`).
    pub(crate) fn set(&self, id: Option<&str>) {
        if let Ok(mut held) = self.held.lock()
            && held.id.as_deref() != id
        {
            match id {
                Some(_) => tracing::info!("pinned: this replica now consumes the pinned handler"),
                None => {
                    tracing::info!("the pin moved to another replica: calls begun under it stop");
                    Held::lose(&mut held);
                }
            }
            held.id = id.map(str::to_owned);
        }
    }

    /// Looks at the clock: after a gap longer than half `ack_wait` since
    /// the last look, the pin is lost here. How many times the process was
    /// found away so far: a loop that sees this change drops what it had
    /// buffered.
    pub(crate) fn look(&self) -> u64 {
        let Ok(mut held) = self.held.lock() else {
            return 0;
        };
        let now = Instant::now();
        let gap = now.saturating_duration_since(held.looked);
        held.looked = now;
        if gap > self.away_after {
            tracing::warn!(
                away_ms = gap.as_millis(),
                "this process was away (paused or starved) past half of ack_wait: what it held may be another replica's by now (the pin moved, or the messages were delivered again); it is dropped unanswered"
            );
            held.aways += 1;
            held.id = None;
            Held::lose(&mut held);
        }
        held.aways
    }

    /// How often the loop looks at the clock while nothing else makes it:
    /// often enough that only a real gap counts as away.
    pub(crate) fn look_every(&self) -> Duration {
        (self.away_after / 4).max(Duration::from_millis(10))
    }

    /// Looks at the clock every [`PinId::look_every`] until the pin is
    /// dropped.
    pub(crate) async fn keep_looking(pin: std::sync::Weak<PinId>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match pin.upgrade() {
                Some(pin) => pin.look(),
                None => return,
            };
        }
    }
}

impl Held {
    /// Stops what was taken under the pin; what is taken next gets a new
    /// fence.
    fn lose(held: &mut Held) {
        held.fence.cancel();
        held.fence = CancellationToken::new();
    }
}

/// What a delivery taken under a pin stops on: the pin lost (a 423, a 400,
/// the process found away) since it was taken.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pin: Arc<PinId>,
    token: CancellationToken,
    aways: u64,
}

impl Fence {
    /// Whether the pin is still the one the delivery was taken under,
    /// looking at the clock first: a process that was just thawed finds
    /// out here, before it takes another step.
    pub(crate) fn holds(&self) -> bool {
        self.pin.look() == self.aways && !self.token.is_cancelled()
    }

    /// Waits until the pin is lost.
    pub(crate) async fn lost(&self) {
        self.token.cancelled().await;
    }
}

/// The pin id the server gave with a message: the *last* `Nats-Pin-Id`,
/// the one it appends on delivery to a pinned client after whatever the
/// publisher stored (a forged or replayed header comes first). An id the
/// server would not have made (it makes short alphanumeric ones) is none.
pub(crate) fn server_pin(headers: &async_nats::HeaderMap) -> Option<&str> {
    let id = headers.get_last(PIN_ID)?.as_str();
    let fits = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    fits.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losing_the_pin_stops_what_was_taken_under_it() {
        let pin = Arc::new(PinId::default());
        pin.set(Some("p1"));
        let begun = pin.fence();
        pin.set(Some("p1"));
        assert!(begun.holds(), "kept");
        pin.set(None);
        assert!(!begun.holds(), "lost");
        assert!(pin.fence().holds(), "what is taken on standby is not");
    }

    #[tokio::test(start_paused = true)]
    async fn a_process_away_past_half_ack_wait_loses_the_pin() {
        let pin = Arc::new(PinId::new(Duration::from_secs(2)));
        pin.set(Some("p1"));
        let taken = pin.fence();
        let aways = pin.look();
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(taken.holds(), "a gap under half ack_wait is not away");
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(taken.holds(), "gaps are counted between looks");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(!taken.holds(), "found away at its next look");
        assert_eq!(pin.look(), aways + 1, "counted once");
        assert!(!pin.held(), "on standby");
        assert!(pin.fence().holds(), "what is taken after is not fenced");
    }

    #[test]
    fn only_an_id_the_server_makes_is_a_pin() {
        let mut headers = async_nats::HeaderMap::new();
        headers.append(PIN_ID, "\"");
        headers.append(PIN_ID, "Srv42");
        assert_eq!(server_pin(&headers), Some("Srv42"));
        let mut forged = async_nats::HeaderMap::new();
        forged.append(PIN_ID, "a\"b");
        assert_eq!(server_pin(&forged), None);
    }
}
