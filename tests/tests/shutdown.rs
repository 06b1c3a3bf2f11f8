//! Graceful shutdown drains in-flight calls and nothing comes back; calls
//! past the shutdown timeout are handed back at once; a deleted durable is
//! recreated under a running app, an event durable where it left off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Config, Context, RunningApp, State, queue, subscribe};
use jetwire_tests::{config, eventually, shared_server, unique_prefix};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<HashMap<u64, Vec<&'static str>>>>);

impl Log {
    fn push(&self, n: u64, what: &'static str) {
        self.0
            .lock()
            .expect("not poisoned")
            .entry(n)
            .or_default()
            .push(what);
    }
    fn count(&self, what: &str) -> usize {
        self.0
            .lock()
            .expect("not poisoned")
            .values()
            .flatten()
            .filter(|w| **w == what)
            .count()
    }
    fn starts_of(&self, n: u64) -> usize {
        self.0
            .lock()
            .expect("not poisoned")
            .get(&n)
            .map_or(0, |v| v.iter().filter(|w| **w == "start").count())
    }
}

#[derive(Clone, Copy)]
struct Pause(Duration);

#[queue("queue.sd-work", concurrency = 50)]
async fn work(n: u64, log: State<Log>, pause: State<Pause>) {
    log.push(n, "start");
    let Pause(pause) = *pause;
    tokio::time::sleep(pause).await;
    log.push(n, "done");
}

#[queue("queue.sd-alive")]
async fn alive(n: u64, log: State<Log>, ctx: Context) {
    let _ = ctx;
    log.push(n, "start");
}

/// `deliver = "new"`, the default: a durable recreated by its deliver
/// policy would skip what was published while it did not exist.
#[subscribe("sd-events.created")]
async fn event_seen(n: u64, log: State<Log>) {
    log.push(n, "start");
}

/// Deletes the app's one durable from `stream`, as an operator would: the
/// stream, and the durable's name.
async fn operator_deletes_the_durable(
    app: &RunningApp,
    stream: &str,
) -> (async_nats::jetstream::stream::Stream, String) {
    let js = async_nats::jetstream::new(app.publisher().client().clone());
    let stream = js.get_stream(stream).await.expect("stream");
    let durable = app.stats()[0].durable.clone();
    stream
        .delete_consumer(&durable)
        .await
        .expect("operator deletes the durable");
    (stream, durable)
}

/// Publishes messages `0..n` to `subject` and waits until every call
/// has started.
async fn start_calls(app: &RunningApp, subject: &str, n: u64, log: &Log) {
    for id in 0..n {
        app.publisher()
            .publish(subject, &id)
            .await
            .expect("published");
    }
    eventually(Duration::from_secs(10), "every call to start", || async {
        (log.count("start") == n as usize).then_some(())
    })
    .await;
}

fn cfg(prefix: &str, shutdown: Duration) -> Config {
    let mut c = config(shared_server(), prefix, "svc");
    c.shutdown_timeout = shutdown;
    c
}

/// Opened once shutdown has begun: the calls it holds are in flight then.
#[derive(Clone)]
struct Gate(tokio::sync::watch::Receiver<bool>);

#[queue("queue.sd-gated", concurrency = 50)]
async fn gated(n: u64, log: State<Log>, State(Gate(mut gate)): State<Gate>) {
    log.push(n, "start");
    let _ = gate.wait_for(|open| *open).await;
    log.push(n, "done");
}

#[tokio::test]
async fn in_flight_calls_finish_and_are_not_redelivered() {
    let prefix = unique_prefix("drain");
    let log = Log::default();
    let (open, gate) = tokio::sync::watch::channel(false);
    let app = App::new(cfg(&prefix, Duration::from_secs(20)))
        .only(&["gated"])
        .state(log.clone())
        .state(Gate(gate))
        .start()
        .await
        .expect("starts");
    start_calls(&app, "queue.sd-gated", 50, &log).await;
    assert_eq!(log.count("done"), 0, "all held until shutdown begins");
    // `join` polls shutdown first, which begins it (stop pulling) before
    // its first wait; only then does the gate open.
    let (shut, ()) = futures_util::future::join(app.shutdown(), async {
        open.send_replace(true);
    })
    .await;
    shut.expect("clean shutdown");
    assert_eq!(log.count("done"), 50, "shutdown waited for every call");

    // The server's own account: nothing unacked, nothing redelivered, and
    // the work queue empty, so every ack was flushed before shutdown ended.
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(jetwire::topology::queue_stream(Some(&prefix)))
        .await
        .expect("the work-queue stream");
    let durable = jetwire::topology::durable_for(
        Some(&prefix),
        "svc",
        jetwire::registry::Kind::Queue,
        "gated",
        "queue.sd-gated",
        None,
    );
    let info = stream.consumer_info(&durable).await.expect("the durable");
    assert_eq!(info.num_ack_pending, 0, "unacked after shutdown");
    assert_eq!(info.num_redelivered, 0, "redelivered");
    let messages = stream.info().await.expect("stream info").state.messages;
    assert_eq!(messages, 0, "left in the work queue");
    for n in 0..50 {
        assert_eq!(log.starts_of(n), 1, "message {n} was redelivered");
    }
}

#[tokio::test]
async fn calls_past_the_timeout_are_handed_back_at_once() {
    let prefix = unique_prefix("handback");
    let log = Log::default();
    let app = App::new(cfg(&prefix, Duration::from_millis(200)))
        .only(&["work"])
        .state(log.clone())
        .state(Pause(Duration::from_secs(3600)))
        .start()
        .await
        .expect("starts");
    app.publisher()
        .publish("queue.sd-work", &1u64)
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the call to start", || async {
        (log.count("start") == 1).then_some(())
    })
    .await;
    let stats_before = app.stats();
    assert_eq!(stats_before[0].interrupted, 0);
    let t0 = std::time::Instant::now();
    app.shutdown()
        .await
        .expect("shutdown returns after the timeout");
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Nak'ed, not left to ack_wait (30s): a new replica gets it right away.
    let again = App::new(cfg(&prefix, Duration::from_millis(200)))
        .only(&["work"])
        .state(log.clone())
        .state(Pause(Duration::ZERO))
        .start()
        .await
        .expect("restarts");
    eventually(Duration::from_secs(10), "the redelivery", || async {
        (log.starts_of(1) == 2).then_some(())
    })
    .await;
    again.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_deleted_durable_is_recreated() {
    let prefix = unique_prefix("recreate");
    let log = Log::default();
    let app = App::new(cfg(&prefix, Duration::from_secs(5)))
        .only(&["alive"])
        .state(log.clone())
        .start()
        .await
        .expect("starts");
    let publisher = app.publisher();
    publisher
        .publish("queue.sd-alive", &1u64)
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the first message", || async {
        (log.starts_of(1) == 1).then_some(())
    })
    .await;

    let (stream, durable) =
        operator_deletes_the_durable(&app, &jetwire::topology::queue_stream(Some(&prefix))).await;

    // A work-queue stream keeps what no consumer read; the loop recreates
    // its durable and gets it.
    publisher
        .publish("queue.sd-alive", &2u64)
        .await
        .expect("published");
    eventually(
        Duration::from_secs(20),
        "the message after the deletion",
        || async { (log.starts_of(2) == 1).then_some(()) },
    )
    .await;
    assert!(
        stream.consumer_info(&durable).await.is_ok(),
        "the durable exists again"
    );
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_event_durable_deleted_before_any_ack_resumes_where_it_began() {
    let prefix = unique_prefix("recreate-ev");
    let log = Log::default();
    let app = App::new(cfg(&prefix, Duration::from_secs(5)))
        .only(&["event_seen"])
        .state(log.clone())
        .start()
        .await
        .expect("starts");
    // At once, before the loop has acked or noted anything; the message
    // lands while no durable exists (the loop waits at least 100 ms before
    // recreating it).
    let stream = jetwire::topology::default_stream(Some(&prefix), "sd-events.created");
    operator_deletes_the_durable(&app, &stream).await;
    app.publisher()
        .publish("sd-events.created", &1u64)
        .await
        .expect("published");
    eventually(
        Duration::from_secs(20),
        "the event published while the durable was gone",
        || async { (log.starts_of(1) >= 1).then_some(()) },
    )
    .await;
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_during_an_outage_finishes_within_its_bound() {
    let mut server = jetwire_tests::Server::start();
    let prefix = unique_prefix("outage");
    let log = Log::default();
    let timeout = Duration::from_millis(500);
    let mut config = config(&server, &prefix, "shutdown");
    config.shutdown_timeout = timeout;
    let app = App::new(config)
        .only(&["work"])
        .state(log.clone())
        .state(Pause(Duration::from_secs(3600)))
        .start()
        .await
        .expect("starts");
    start_calls(&app, "queue.sd-work", 5, &log).await;
    // Down: the client is left reconnecting, and nothing it sends arrives.
    server.stop();
    let t0 = std::time::Instant::now();
    let bound = timeout + Duration::from_secs(6);
    let ended = tokio::time::timeout(bound + Duration::from_secs(10), app.shutdown()).await;
    let took = t0.elapsed();
    let result = ended.expect("shutdown must not wait for a server that is down");
    let err = result.expect_err("the final flush cannot reach a server that is down");
    assert!(err.to_string().contains("ack_wait"), "{err}");
    assert!(
        took <= bound + Duration::from_secs(1),
        "took {took:?}, bound {bound:?}"
    );
}
