//! An app without a server (`NATS_URL=memory://`): the same handlers in
//! process, in real time. Retries wait their real delays, dead letters
//! reach the handlers of dead letters, handlers publish to each other,
//! signals and streamed output are waited for, a key's messages keep
//! their order, and what needs a server says so.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jetwire::dlq::DeadLetter;
use jetwire::{
    App, Config, Context, HandlerError, Output, PublishOptions, Publisher, Service, ServiceContext,
    State, queue, subscribe,
};
use jetwire_tests::eventually;
use tokio::sync::{Mutex, mpsc};

/// What the handlers report, in the order they did it.
#[derive(Clone)]
struct Seen(mpsc::UnboundedSender<String>);

/// One test at a time: `Publisher::connect` finds the app started last.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn memory(app: &str) -> Config {
    Config::builder()
        .url("memory://")
        .app(app)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid")
}

/// The app of `handlers` on `memory://`, started, and what its handlers
/// report; the guard keeps other tests' apps from starting meanwhile.
async fn start(
    handlers: &[&str],
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    jetwire::RunningApp,
    mpsc::UnboundedReceiver<String>,
) {
    let one = ONE_AT_A_TIME.lock().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let running = App::new(memory("mem"))
        .only(handlers)
        .state(Seen(tx))
        .start()
        .await
        .expect("starts with no server");
    (one, running, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a handler reported within 10 s")
        .expect("the channel is open")
}

#[queue("queue.mem-flaky", max_deliver = 5, backoff = ["150ms"])]
async fn mem_flaky(n: u32, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    let _ = seen.0.0.send(format!("{n} attempt {}", ctx.attempt()));
    if ctx.attempt() < 3 {
        return Err(HandlerError::transient("not yet"));
    }
    Ok(())
}

#[tokio::test]
async fn retries_wait_their_real_backoff_then_the_message_is_acked() {
    let (_one, running, mut rx) = start(&["mem_flaky"]).await;
    assert!(running.publisher().nats_client().is_none());
    let health = running.health();
    assert!(health.ready && health.connected, "{:?}", health.reasons);

    let receipt = running
        .publisher()
        .publish("queue.mem-flaky", &7u32)
        .await
        .expect("taken in");
    assert_eq!((receipt.stream.as_str(), receipt.sequence), ("QUEUE", 1));
    let mut times = Vec::new();
    for attempt in 1..=3 {
        assert_eq!(next(&mut rx).await, format!("7 attempt {attempt}"));
        times.push(Instant::now());
    }
    for pair in times.windows(2) {
        let waited = pair[1] - pair[0];
        assert!(
            waited >= Duration::from_millis(150),
            "a retry came after {waited:?}, before its backoff of 150 ms"
        );
    }
    eventually(Duration::from_secs(5), "the ack", || async {
        let s = &running.stats()[0];
        (s.acked == 1).then_some(())
    })
    .await;
    let s = &running.stats()[0];
    assert_eq!((s.received, s.retried, s.dead_lettered), (3, 2, 0));
    running.shutdown().await.expect("drains");
}

#[queue("queue.mem-poison", max_deliver = 3)]
async fn mem_poison(_n: u32) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("never valid"))
}

#[subscribe("dlq.queue.mem-poison")]
async fn mem_poison_letters(letter: DeadLetter, seen: State<Seen>) -> Result<(), HandlerError> {
    let n: u32 = letter.decode().map_err(HandlerError::permanent)?;
    let reason = letter.reason().map(|r| r.as_str()).unwrap_or_default();
    let _ = seen
        .0
        .0
        .send(format!("letter {n} {reason} from {}", letter.subject()));
    Ok(())
}

#[tokio::test]
async fn a_permanent_failure_is_a_dead_letter_the_letter_handlers_get() {
    let (_one, running, mut rx) = start(&["mem_poison", "mem_poison_letters"]).await;
    running
        .publisher()
        .publish("queue.mem-poison", &9u32)
        .await
        .expect("taken in");
    assert_eq!(
        next(&mut rx).await,
        "letter 9 permanent from queue.mem-poison"
    );
    let poison = running
        .stats()
        .into_iter()
        .find(|s| s.handler == "mem_poison")
        .expect("there");
    assert_eq!(
        (poison.received, poison.dead_lettered, poison.retried),
        (1, 1, 0)
    );
    running.shutdown().await.expect("drains");
}

#[subscribe("orders.mem-created")]
async fn mem_billing(order: u32, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish("queue.mem-invoice", &(order * 10)).await?;
    Ok(())
}

#[subscribe("orders.mem-created")]
async fn mem_audit(order: u32, seen: State<Seen>) -> Result<(), HandlerError> {
    let _ = seen.0.0.send(format!("audit {order}"));
    Ok(())
}

#[queue("queue.mem-invoice")]
async fn mem_invoice(amount: u32, seen: State<Seen>) -> Result<(), HandlerError> {
    let _ = seen.0.0.send(format!("invoice {amount}"));
    Ok(())
}

#[tokio::test]
async fn every_event_handler_gets_a_copy_and_what_handlers_publish_is_delivered() {
    let (_one, running, mut rx) = start(&["mem_billing", "mem_audit", "mem_invoice"]).await;
    // Publisher::connect finds the app running in memory in this process.
    let publisher = Publisher::connect(&memory("other"))
        .await
        .expect("finds the app");
    publisher
        .publish("orders.mem-created", &4u32)
        .await
        .expect("taken in");
    let mut got = vec![next(&mut rx).await, next(&mut rx).await];
    got.sort();
    assert_eq!(got, ["audit 4", "invoice 40"]);
    running.shutdown().await.expect("drains");
}

#[tokio::test]
async fn batches_are_taken_in_in_order_with_their_receipts() {
    let (_one, running, mut rx) = start(&["mem_invoice"]).await;
    let publisher = running.publisher();
    let batch = |range: std::ops::Range<u32>| {
        range
            .map(|n| {
                jetwire::publish::Message::json("queue.mem-invoice", &n, PublishOptions::new())
            })
            .collect::<Result<Vec<_>, _>>()
            .expect("messages")
    };
    let receipts = publisher
        .publish_batch(batch(1..4))
        .await
        .expect("taken in");
    assert_eq!(receipts.len(), 3);
    let fast = publisher.publish_fast(batch(4..6)).await.expect("taken in");
    assert_eq!(fast.count, 2);
    assert_eq!(fast.last_sequence, receipts[2].sequence + 2);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next(&mut rx).await);
    }
    assert_eq!(
        got,
        [
            "invoice 1",
            "invoice 2",
            "invoice 3",
            "invoice 4",
            "invoice 5"
        ]
    );
    running.shutdown().await.expect("drains");
}

#[queue("queue.mem-approve")]
async fn mem_approve(job: u32, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    ctx.stream_output(&format!("job {job}: waiting")).await?;
    let _ = seen.0.0.send("waiting".to_owned());
    let who: String = ctx
        .wait_for_signal("approved", Duration::from_secs(20))
        .await?;
    ctx.stream_output(&format!("approved by {who}")).await?;
    Ok(())
}

#[tokio::test]
async fn a_signal_is_waited_for_and_streamed_output_is_followed_live() {
    let (_one, running, mut rx) = start(&["mem_approve"]).await;
    let publisher = running.publisher();
    // Followed before the message exists: nothing is missed.
    let mut output = publisher
        .follow_output("approve-1", "mem_approve")
        .await
        .expect("follows");
    publisher
        .publish_with(
            "queue.mem-approve",
            &1u32,
            PublishOptions::new().message_id("approve-1"),
        )
        .await
        .expect("taken in");
    assert_eq!(next(&mut rx).await, "waiting");
    let first = tokio::time::timeout(Duration::from_secs(10), output.next())
        .await
        .expect("the first chunk while the handler waits");
    assert!(
        matches!(&first, Some(Ok(Output::Chunk { delivery: 1, payload })) if payload.as_ref() == b"\"job 1: waiting\""),
        "{first:?}"
    );
    publisher
        .signal("approve-1", "approved", &"ada")
        .await
        .expect("sent");
    let rest: Vec<Output> = tokio::time::timeout(
        Duration::from_secs(10),
        output.map(|item| item.expect("an item")).collect(),
    )
    .await
    .expect("the output ends with the run");
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(
        matches!(&rest[0], Output::Chunk { payload, .. } if payload.as_ref() == b"\"approved by ada\"")
    );
    assert!(
        matches!(
            rest[1],
            Output::End {
                delivery: 1,
                last: true
            }
        ),
        "{rest:?}"
    );
    running.shutdown().await.expect("drains");
}

#[queue("queue.mem-keyed", partitions = 4, concurrency = 8)]
async fn mem_keyed(n: u32, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    // Later messages finish faster: only the partition's order keeps them.
    tokio::time::sleep(Duration::from_millis(u64::from(20 - n % 20))).await;
    let key = ctx
        .headers()
        .get("Jetwire-Key")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let _ = seen.0.0.send(format!("{key} {n}"));
    Ok(())
}

#[tokio::test]
async fn a_keys_messages_are_handled_in_the_order_published() {
    let (_one, running, mut rx) = start(&["mem_keyed"]).await;
    let publisher = running.publisher();
    const KEYS: u32 = 6;
    const EACH: u32 = 20;
    for n in 0..EACH {
        for k in 0..KEYS {
            publisher
                .publish_with(
                    "queue.mem-keyed",
                    &n,
                    PublishOptions::new().key(format!("k{k}")),
                )
                .await
                .expect("taken in");
        }
    }
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    let mut out_of_order = 0;
    for _ in 0..KEYS * EACH {
        let line = next(&mut rx).await;
        let (key, n) = line.split_once(' ').expect("key and number");
        let n: i64 = n.parse().expect("a number");
        let before = last.insert(key.to_owned(), n).unwrap_or(-1);
        if n != before + 1 {
            out_of_order += 1;
        }
    }
    assert_eq!(out_of_order, 0, "messages of one key handled out of order");
    running.shutdown().await.expect("drains");
}

#[queue("queue.mem-slow")]
async fn mem_slow(_n: u32, ctx: Context, seen: State<Seen>) -> Result<(), HandlerError> {
    let _ = seen.0.0.send("begun".to_owned());
    ctx.shutdown().await;
    let _ = seen.0.0.send("finished while draining".to_owned());
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_the_calls_in_flight_finish() {
    let (_one, running, mut rx) = start(&["mem_slow"]).await;
    running
        .publisher()
        .publish("queue.mem-slow", &1u32)
        .await
        .expect("taken in");
    assert_eq!(next(&mut rx).await, "begun");
    let publisher = running.publisher();
    running.shutdown().await.expect("drains");
    assert_eq!(next(&mut rx).await, "finished while draining");
    // Nothing handles a message now: refused, not silently dropped.
    let e = publisher
        .publish("queue.mem-slow", &2u32)
        .await
        .expect_err("refused after shutdown");
    assert!(e.to_string().contains("has stopped"), "{e}");
}

struct Relay;

impl Service for Relay {
    fn name(&self) -> &str {
        "relay"
    }

    fn run(
        self: Box<Self>,
        _ctx: ServiceContext,
    ) -> futures_util::future::BoxFuture<'static, Result<(), jetwire::Error>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn what_needs_a_server_says_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mixed = Config::builder()
        .url("memory://,nats://127.0.0.1:4222")
        .app("mem")
        .build();
    let e = mixed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("memory:// runs the app in process"), "{e}");

    let e = App::new(memory("mem"))
        .only(&[])
        .service(Relay)
        .start()
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("App::service(`relay`)"), "{e}");

    let running = App::new(memory("mem"))
        .only(&[])
        .start()
        .await
        .expect("starts");
    let needs = |e: jetwire::Error| {
        let e = e.to_string();
        assert!(
            e.contains("needs a NATS server, and NATS_URL=memory:// has none"),
            "{e}"
        );
    };
    needs(
        running
            .dead_letters()
            .count()
            .await
            .expect_err("no dead-letter stream"),
    );
    needs(
        running
            .publisher()
            .stream_of("orders.created")
            .await
            .expect_err("no streams"),
    );
    needs(
        running
            .publisher()
            .ensure_streams(&["orders.created"])
            .await
            .expect_err("no streams"),
    );
    needs(
        jetwire::topology::status(&memory("mem"))
            .await
            .expect_err("no server"),
    );
    running.shutdown().await.expect("drains");
}
