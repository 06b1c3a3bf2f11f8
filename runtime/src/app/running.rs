//! A started app: its handle, what it reports (stats, health), and how it
//! shuts down; the supervisor of its background tasks.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consume::Counters;
use crate::error::Error;
use crate::handler::registry::HandlerDef;
use crate::observe::health::{Health, Phase, Readiness};
use crate::observe::http;
use crate::publish::Publisher;

use super::signal;

/// A started app. Dropping it stops consuming at once; call
/// [`RunningApp::shutdown`] to drain first.
pub struct RunningApp {
    pub(super) config: Config,
    /// What the app publishes through: its connection, or its handlers
    /// in process (`NATS_URL=memory://`); shared by every `publisher()`.
    pub(super) publisher: Publisher,
    /// Owns the handler loops and the advisory reader ([`supervise`]).
    pub(super) supervisor: tokio::task::JoinHandle<Vec<String>>,
    /// Why the supervisor stopped the app, once it has.
    pub(super) failure: tokio::sync::watch::Receiver<Option<String>>,
    pub(super) stop: CancellationToken,
    pub(super) abort: CancellationToken,
    pub(super) stats: Vec<(&'static HandlerDef, String, Arc<Counters>)>,
    pub(super) readiness: Arc<Readiness>,
    /// Serves `/healthz`, `/readyz` and `/metrics` until dropped.
    pub(super) listener: Option<http::Listener>,
}

impl fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningApp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one handler did in this process so far.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerStats {
    /// The handler's fn name.
    pub handler: &'static str,
    /// Its subject.
    pub subject: &'static str,
    /// Its durable consumer.
    pub durable: String,
    /// Deliveries received.
    pub received: u64,
    /// Deliveries acked.
    pub acked: u64,
    /// Deliveries nak'ed for a retry.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Messages dropped on purpose ([`HandlerError::discard`](crate::HandlerError::discard)).
    pub discarded: u64,
    /// Calls that paused ([`HandlerError::pause`](crate::HandlerError::pause)):
    /// handed back to run again, their run not counted.
    pub paused: u64,
    /// Calls that continued with a next step
    /// ([`HandlerError::continue_with`](crate::HandlerError::continue_with)):
    /// acked, the next step published.
    pub continued: u64,
    /// Calls interrupted by the shutdown timeout and handed back.
    pub interrupted: u64,
    /// Calls that failed after their message was acknowledged
    /// (`ack = "first"`, `ctx.ack()`): never retried.
    pub failed_after_ack: u64,
}

impl RunningApp {
    /// A publisher sharing this app's connection and subject prefix.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The deployment's dead letters, on this app's connection.
    pub fn dead_letters(&self) -> crate::dlq::DeadLetters {
        crate::dlq::DeadLetters::on(self.publisher())
    }

    /// Each handler's counters in this process.
    pub fn stats(&self) -> Vec<HandlerStats> {
        self.stats
            .iter()
            .map(|(def, durable, c)| HandlerStats {
                handler: def.name,
                subject: def.subject,
                durable: durable.clone(),
                received: c.received.load(Ordering::Relaxed),
                acked: c.acked.load(Ordering::Relaxed),
                retried: c.retried.load(Ordering::Relaxed),
                dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                discarded: c.discarded.load(Ordering::Relaxed),
                paused: c.paused.load(Ordering::Relaxed),
                continued: c.continued.load(Ordering::Relaxed),
                interrupted: c.interrupted.load(Ordering::Relaxed),
                failed_after_ack: c.failed_after_ack.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Whether the app is ready, and what keeps it from being so: what
    /// `/readyz` answers.
    ///
    /// ```no_run
    /// # async fn f(config: jetwire::Config) -> Result<(), jetwire::Error> {
    /// let running = jetwire::App::new(config).start().await?;
    /// let health = running.health();
    /// assert!(health.live);
    /// println!("ready: {}, because: {:?}", health.ready, health.reasons);
    /// # Ok(()) }
    /// ```
    pub fn health(&self) -> Health {
        self.readiness.health()
    }

    /// The address `/healthz`, `/readyz` and `/metrics` are served on
    /// (`JETWIRE_HTTP_ADDR`, with the port the system chose for `:0`).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().map(http::Listener::addr)
    }

    /// Stops pulling, lets in-flight calls finish for up to
    /// `shutdown_timeout`, hands back (naks) what did not finish so a live
    /// replica gets it at once, flushes acks, and closes.
    ///
    /// Returns within `shutdown_timeout` plus 6 s whatever the server does
    /// (down, frozen, slow): what could not be handed back or flushed by
    /// then is named in the error, and comes back from the server after
    /// `ack_wait`; so is any background task that panicked.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.readiness.set_phase(Phase::Draining);
        self.stop.cancel();
        let mut problems = Vec::new();
        let timeout = self.config.shutdown_timeout;
        let supervisor = &mut self.supervisor;
        let joined = match tokio::time::timeout(timeout, &mut *supervisor).await {
            Ok(joined) => Some(joined),
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "shutdown timeout: interrupting the calls still running"
                );
                self.abort.cancel();
                let handed_back = tokio::time::timeout(SHUTDOWN_MARGIN, &mut *supervisor).await;
                if handed_back.is_err() {
                    supervisor.abort();
                    problems.push(format!(
                        "handler loops were still handing messages back {SHUTDOWN_MARGIN:?} after the calls were interrupted, and were stopped; their messages are redelivered after ack_wait"
                    ));
                }
                handed_back.ok()
            }
        };
        if let Some(joined) = joined {
            problems.extend(
                joined.unwrap_or_else(|e| vec![format!("the task supervisor failed: {e}")]),
            );
        }
        let flushed = match self.publisher.nats_client() {
            Some(client) => tokio::time::timeout(SHUTDOWN_MARGIN, client.flush()).await,
            None => Ok(Ok(())),
        };
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!(
                "could not flush acks to the server: {e}; unacked messages are redelivered after ack_wait"
            )),
            Err(_) => problems.push(format!(
                "the server took no final flush within {SHUTDOWN_MARGIN:?}; unacked messages are redelivered after ack_wait"
            )),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Shutdown(problems.join("; ")))
        }
    }
}

impl RunningApp {
    /// Consumes until SIGINT or SIGTERM, then [`RunningApp::shutdown`]:
    /// what [`App::run`](crate::App::run) does once started, for an app
    /// that does something first (publishes, say). A second signal stops
    /// at once; a background task that fails stops the app too, and
    /// this returns its error.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let running = jetwire::App::new(jetwire::Config::from_env()?).start().await?;
    /// running.publisher().publish("orders.created", &serde_json::json!({"order_id": 1})).await?;
    /// running.run_until_signal().await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_until_signal(self) -> Result<(), Error> {
        let mut failure = self.failure.clone();
        tokio::select! {
            _ = signal() => {
                tracing::info!("signal received: draining in-flight calls (a second signal stops at once)");
            }
            _ = failure.wait_for(Option::is_some) => {}
        }
        tokio::select! {
            r = self.shutdown() => r,
            _ = signal() => Err(Error::Shutdown(
                "second signal: stopped at once; unfinished messages are redelivered after ack_wait".into(),
            )),
        }
    }
}

/// How long shutdown waits, past `shutdown_timeout`, for interrupted calls
/// to be handed back, and then for the final flush.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.stop.cancel();
        self.abort.cancel();
        // Drops the tasks' set, which aborts them: at once, as documented.
        self.supervisor.abort();
    }
}
