//! Liveness and readiness: what `/healthz`, `/readyz` and
//! `RunningApp::health()` report.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

/// Where the app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Connecting, binding streams and durables, starting loops.
    Starting = 0,
    /// Every loop started.
    Running = 1,
    /// Shutdown began: no new work is taken.
    Draining = 2,
}

/// The live facts readiness is made of, shared by the app, its loops and
/// the HTTP listener.
#[derive(Default)]
pub(crate) struct Readiness {
    phase: AtomicU8,
    client: OnceLock<async_nats::Client>,
    /// The app runs in process (`NATS_URL=memory://`): it has no
    /// connection to lose.
    serverless: AtomicBool,
    handlers: OnceLock<Vec<(&'static str, Arc<AtomicBool>)>>,
}

impl Readiness {
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Running,
            _ => Phase::Draining,
        }
    }

    /// The connection whose state readiness follows.
    pub(crate) fn connected_through(&self, client: async_nats::Client) {
        let _ = self.client.set(client);
    }

    /// The app runs in process, with no server: always connected.
    pub(crate) fn serverless(&self) {
        self.serverless.store(true, Ordering::Release);
    }

    /// The handlers, each with the flag its loop keeps: consuming or not.
    pub(crate) fn handlers(&self, handlers: Vec<(&'static str, Arc<AtomicBool>)>) {
        let _ = self.handlers.set(handlers);
    }

    /// The facts now.
    pub(crate) fn health(&self) -> Health {
        let phase = self.phase();
        let connected = self.serverless.load(Ordering::Acquire)
            || self
                .client
                .get()
                .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
        let handlers: Vec<HandlerHealth> = self
            .handlers
            .get()
            .map(|hs| {
                hs.iter()
                    .map(|(name, consuming)| HandlerHealth {
                        handler: name,
                        consuming: consuming.load(Ordering::Relaxed),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut reasons = Vec::new();
        match phase {
            Phase::Starting => reasons
                .push("starting: connecting to NATS and binding streams and durables".to_owned()),
            Phase::Draining => reasons.push("draining: shutdown began".to_owned()),
            Phase::Running => {}
        }
        if phase != Phase::Starting && !connected {
            reasons.push("connection: not connected to NATS; reconnecting".to_owned());
        }
        if phase == Phase::Running {
            for h in handlers.iter().filter(|h| !h.consuming) {
                reasons.push(format!(
                    "handler `{}`: not consuming; its pull loop is recovering",
                    h.handler
                ));
            }
        }
        Health {
            live: true,
            ready: reasons.is_empty(),
            connected,
            draining: phase == Phase::Draining,
            handlers,
            reasons,
        }
    }
}

/// Whether the app is alive and ready, and if not, why: what `/readyz`
/// answers (as JSON) and [`RunningApp::health`] returns.
///
/// Ready means connected, every handler consuming, and not draining.
///
/// ```no_run
/// # async fn f(running: jetwire::RunningApp) {
/// let health = running.health();
/// if !health.ready {
///     eprintln!("not ready: {}", health.reasons.join("; "));
/// }
/// # }
/// ```
///
/// [`RunningApp::health`]: crate::RunningApp::health
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The app runs (what `/healthz` answers 200 for).
    pub live: bool,
    /// Connected, every handler consuming, not draining.
    pub ready: bool,
    /// The connection to NATS is up.
    pub connected: bool,
    /// Shutdown began.
    pub draining: bool,
    /// Each handler, and whether its loop is consuming.
    pub handlers: Vec<HandlerHealth>,
    /// What keeps the app from being ready, one sentence each; empty when
    /// ready.
    pub reasons: Vec<String>,
}

/// One handler's part in [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandlerHealth {
    /// The handler's fn name.
    pub handler: &'static str,
    /// Its loop is pulling messages.
    pub consuming: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_is_not_ready_and_says_so() {
        let r = Readiness::default();
        let h = r.health();
        assert!(h.live);
        assert!(!h.ready);
        assert!(h.reasons[0].starts_with("starting"), "{:?}", h.reasons);
    }

    #[test]
    fn a_handler_not_consuming_is_named() {
        let r = Readiness::default();
        let flag = Arc::new(AtomicBool::new(false));
        r.handlers(vec![("on_order", flag.clone())]);
        r.set_phase(Phase::Running);
        let h = r.health();
        assert!(!h.ready);
        // No client: not connected either.
        assert!(h.reasons.iter().any(|r| r.starts_with("connection")));
        assert!(h.reasons.iter().any(|r| r.contains("`on_order`")));
        flag.store(true, Ordering::Relaxed);
        assert!(!r.health().reasons.iter().any(|r| r.contains("`on_order`")));
        r.set_phase(Phase::Draining);
        assert!(r.health().draining);
    }
}
