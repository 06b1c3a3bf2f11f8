//! An app without a server (`NATS_URL=memory://`): the handlers run in
//! process, on the same [`step`] `TestApp` delivers by, in real time.
//!
//! Every handler (every partition of a partitioned one) has a lane: the
//! messages its durable would hold, in order, and at most `concurrency`
//! calls of them at a time (one, in a partition). A retried or paused
//! delivery comes back to its lane after its real delay. Publishes, from
//! handlers or a [`Publisher`](crate::Publisher), go to the lanes of every
//! handler whose subject matches. Nothing outlives the process: what is
//! still queued at shutdown is dropped, and said so.

pub(crate) mod log;
pub(crate) mod step;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::classify::{Answer, Counted};
use crate::consume::Counters;
use crate::dlq::letter as dlq_letter;
use crate::error::{Error, PublishError};
use crate::handler::context::Env;
use crate::handler::middleware::Middlewares;
use crate::handler::registry::HandlerDef;
use crate::handler::state::States;
use crate::names;
use crate::partition;
use crate::policy::runs::Record;
use crate::protocol::streamed::Output;
use crate::publish::local::Local;
use crate::publish::message::{self, Outbound};
use crate::publish::outlet::{Outlet, Receipt};

use log::Log;
use step::{Held, Lane};

/// The lanes of an app on `memory://`, and where their messages go. See
/// the [module docs](self).
pub(crate) struct Engine {
    log: Arc<Log>,
    lanes: Vec<Entry>,
}

/// Where a lane takes messages in.
struct Entry {
    def: &'static HandlerDef,
    partition: Option<u32>,
    stream: Arc<str>,
    tx: mpsc::UnboundedSender<Held>,
}

/// One lane's loop, before it is spawned.
pub(crate) struct LaneTask {
    /// Its name, for the app's task list.
    pub(crate) name: String,
    pub(crate) task: BoxFuture<'static, Result<(), Error>>,
}

/// What an app on `memory://` runs.
pub(crate) struct Started {
    pub(crate) engine: Arc<Engine>,
    pub(crate) tasks: Vec<LaneTask>,
    /// Each handler's counters, with its durable.
    pub(crate) stats: Vec<(&'static HandlerDef, String, Arc<Counters>)>,
}

/// What the lanes of one app share.
pub(crate) struct Setup<'a> {
    pub(crate) app: &'a str,
    pub(crate) handlers: &'a [&'static HandlerDef],
    pub(crate) states: Arc<States>,
    pub(crate) middlewares: Arc<Middlewares>,
    /// Cancelled when the app drains: lanes stop taking messages.
    pub(crate) stop: CancellationToken,
    /// Cancelled when the shutdown timeout passes: calls are dropped.
    pub(crate) abort: CancellationToken,
}

impl Engine {
    /// The engine of `setup`'s handlers, with a lane each, not yet
    /// running: spawn [`Started::tasks`].
    pub(crate) fn start(setup: Setup<'_>) -> Started {
        let log = Arc::new(Log::real_time());
        // Every lane's intake first: the engine routes into them, and the
        // calls publish through the engine.
        let mut lanes = Vec::new();
        let mut queues = Vec::new();
        for def in setup.handlers {
            let partitions = def.partitions().unwrap_or(0);
            let mut own = Vec::new();
            for partition in std::iter::once(None).chain((0..partitions).map(Some)) {
                let (tx, rx) = mpsc::unbounded_channel();
                lanes.push(Entry {
                    def,
                    partition,
                    stream: def.stream(None).into(),
                    tx: tx.clone(),
                });
                own.push((partition, tx, rx));
            }
            queues.push((*def, own));
        }
        let engine = Arc::new(Engine {
            log: log.clone(),
            lanes,
        });
        let env = Arc::new(Env {
            states: setup.states.clone(),
            outlet: Arc::new(EngineOutlet(engine.clone())),
            acks: None,
            draining: setup.stop.clone(),
            checkpoints: log.clone(),
            signals: log.clone(),
            streamed: log.clone(),
        });
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for (def, own) in queues {
            let lane = Arc::new(Lane::new(
                def,
                setup.app,
                env.clone(),
                setup.middlewares.clone(),
            ));
            let counters = Arc::new(Counters::new(def.name));
            counters.consuming(true);
            stats.push((def, lane.route.durable.to_string(), counters.clone()));
            for (partition, tx, rx) in own {
                let running = Running {
                    lane: lane.clone(),
                    tx,
                    counters: counters.clone(),
                    engine: engine.clone(),
                    log: log.clone(),
                    stop: setup.stop.clone(),
                    abort: setup.abort.clone(),
                };
                // A partition is handled in order.
                let width = match partition {
                    Some(_) => 1,
                    None => def.concurrency().max(1) as usize,
                };
                tasks.push(LaneTask {
                    name: match partition {
                        Some(p) => format!("handler `{}`, partition {p}", def.name),
                        None => format!("handler `{}`", def.name),
                    },
                    task: Box::pin(running.run(rx, width)),
                });
            }
        }
        Started {
            engine,
            tasks,
            stats,
        }
    }

    /// Takes `msg` into the lane of every handler whose subject matches
    /// it: what storing it in its streams is with a server. Refused once
    /// the lanes it goes to have stopped (the app shut down): nothing
    /// would ever handle it.
    fn accept(&self, msg: Outbound) -> Result<Receipt, PublishError> {
        let msg = Arc::new(msg);
        let key = msg.headers.get(message::KEY).map(|k| k.as_str().to_owned());
        let published_at = self.log.now();
        let mut stored: Vec<(Arc<str>, u64)> = Vec::new();
        let (mut matched, mut taken) = (0, 0);
        for entry in &self.lanes {
            let Some((partition, subject)) = partition::delivery(
                entry.def.subject,
                entry.def.partitions(),
                &msg.subject,
                key.as_deref(),
            ) else {
                continue;
            };
            if partition != entry.partition {
                continue;
            }
            matched += 1;
            // One sequence per stream, whichever durables read it.
            let sequence = match stored.iter().find(|(s, _)| *s == entry.stream) {
                Some((_, n)) => *n,
                None => {
                    let n = self.log.next_sequence(&entry.stream);
                    stored.push((entry.stream.clone(), n));
                    n
                }
            };
            let held = Held {
                msg: msg.clone(),
                subject,
                sequence,
                published_at,
                deliveries: 0,
                record: Record::default(),
            };
            if entry.tx.send(held).is_ok() {
                taken += 1;
            }
        }
        if matched > 0 && taken == 0 {
            return Err(PublishError::Send {
                subject: msg.subject.clone(),
                source: Box::new(std::io::Error::other(
                    "the app running in memory (NATS_URL=memory://) has stopped, and nothing handles it now",
                )),
            });
        }
        if taken < matched {
            tracing::warn!(subject = %msg.subject, handlers = matched - taken, "a message published after some handlers stopped is not delivered to them");
        }
        let (stream, sequence) = stored.into_iter().next().unwrap_or_else(|| {
            // Captured by nothing that reads it: stored, as a stream with
            // no consumer would.
            let stream = names::default_stream(None, &msg.subject);
            let n = self.log.next_sequence(&stream);
            (stream.into(), n)
        });
        Ok(Receipt {
            stream: stream.to_string(),
            sequence,
            duplicate: false,
        })
    }

    /// Stores a dead letter: logged, and delivered to the handlers of
    /// dead letters, as the dead-letter stream would.
    fn letter(&self, letter: Outbound) {
        let header = |name| letter.headers.get(name).map(|v| v.as_str().to_owned());
        tracing::warn!(
            subject = %letter.subject,
            reason = header(dlq_letter::REASON),
            error = header(dlq_letter::ERROR),
            "dead letter (NATS_URL=memory://: kept only while the process runs)"
        );
        if let Err(e) = self.accept(letter) {
            tracing::warn!(error = %e, "the dead letter is not delivered");
        }
    }
}

impl Local for Engine {
    fn publish(&self, msg: Outbound) -> Result<Receipt, PublishError> {
        self.accept(msg)
    }

    fn signal(&self, key: String, value: Bytes) {
        self.log.signal(key, value);
    }

    fn follow(&self, keys: String) -> BoxStream<'static, Result<Output, Error>> {
        self.log.follow(keys)
    }
}

/// What handlers publish through: into the engine's lanes.
struct EngineOutlet(Arc<Engine>);

impl Outlet for EngineOutlet {
    fn publish(&self, msg: Outbound) -> BoxFuture<'_, Result<(), PublishError>> {
        let accepted = self.0.accept(msg).map(drop);
        Box::pin(async move { accepted })
    }
}

/// One lane at work.
struct Running {
    lane: Arc<Lane>,
    /// Its own intake: where a delivery handed back goes after its delay.
    tx: mpsc::UnboundedSender<Held>,
    counters: Arc<Counters>,
    engine: Arc<Engine>,
    log: Arc<Log>,
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Running {
    /// Takes messages in order, `width` calls at a time, until the app
    /// drains; then waits for the calls begun.
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Held>, width: usize) -> Result<(), Error> {
        let this = Arc::new(self);
        let places = Arc::new(Semaphore::new(width));
        let calls = TaskTracker::new();
        loop {
            let place = tokio::select! {
                biased;
                () = this.stop.cancelled() => break,
                place = places.clone().acquire_owned() => place,
            };
            let Ok(place) = place else { break };
            let held = tokio::select! {
                biased;
                () = this.stop.cancelled() => break,
                held = rx.recv() => held,
            };
            let Some(held) = held else { break };
            let this = this.clone();
            calls.spawn(async move {
                this.call(held).await;
                drop(place);
            });
        }
        calls.close();
        calls.wait().await;
        rx.close();
        let left = std::iter::from_fn(|| rx.try_recv().ok()).count();
        if left > 0 {
            tracing::warn!(
                handler = this.lane.def.name,
                left,
                "messages still queued are dropped: NATS_URL=memory:// keeps nothing after the process"
            );
        }
        Ok(())
    }

    /// One delivery of `held`, settled; handed back after its delay if
    /// it is to run again.
    async fn call(&self, mut held: Held) {
        self.counters.received();
        let log = self.log.clone();
        let step = tokio::select! {
            step = step::deliver(&self.lane, &mut held, move || log.now()) => step,
            () = self.abort.cancelled() => {
                self.counters.interrupted();
                return;
            }
        };
        let def = self.lane.def;
        if let Some(letter) = step.letter {
            self.engine.letter(letter);
        }
        if let Some(e) = &step.unpublished {
            tracing::warn!(handler = def.name, error = %e, "could not publish the next step");
        }
        let error = step.failure.as_deref().unwrap_or_default();
        let attempt = step.attempt;
        match step.plan.counted {
            Counted::Acked => self.counters.acked(),
            Counted::Continued => self.counters.continued(),
            Counted::Retried => {
                self.counters.retried();
                tracing::warn!(handler = def.name, attempt, error, "failed; will retry");
            }
            Counted::DeadLettered(reason) | Counted::GaveUp(reason) => {
                self.counters.dead_lettered(reason);
                tracing::warn!(handler = def.name, attempt, %reason, error, "dead-lettered");
            }
            Counted::Paused => self.counters.paused(),
            Counted::Discarded => self.counters.discarded(),
            Counted::FailedAfterAck => {
                self.counters.failed_after_ack();
                tracing::warn!(
                    handler = def.name,
                    error,
                    "failed after the message was acknowledged; not retried"
                );
            }
        }
        if let Answer::Nak(delay) = step.plan.answer {
            self.again(held, delay);
        }
    }

    /// Hands `held` back to the lane after `delay`, unless the app drains
    /// first.
    fn again(&self, held: Held, delay: Duration) {
        let tx = self.tx.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => { let _ = tx.send(held); }
                () = stop.cancelled() => {}
            }
        });
    }
}
