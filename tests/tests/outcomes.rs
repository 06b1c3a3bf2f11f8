//! Every row of the outcome table (README, crate docs), against a real nats-server, with
//! the dead letters read back from the DLQ stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Context, HandlerError, Raw, RunningApp, State, queue};
use jetwire_tests::{
    config, dlq_stream, eventually, header, shared_server, stream_messages, unique_prefix,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
    mode: String,
}

/// Every delivery each job id saw: its attempt numbers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<u64, Vec<u32>>>>);

impl Seen {
    fn record(&self, id: u64, attempt: u32) {
        self.0
            .lock()
            .expect("not poisoned")
            .entry(id)
            .or_default()
            .push(attempt);
    }

    fn attempts(&self, id: u64) -> Vec<u32> {
        self.0
            .lock()
            .expect("not poisoned")
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}

#[queue("queue.job", max_deliver = 3, backoff = ["50ms", "100ms"], timeout = "300ms")]
async fn job(job: Job, seen: State<Seen>, ctx: Context) -> Result<(), HandlerError> {
    seen.record(job.id, ctx.attempt());
    match job.mode.as_str() {
        "ok" => Ok(()),
        "flaky" if ctx.attempt() < 3 => Err(std::io::Error::other("flaky").into()),
        "flaky" => Ok(()),
        "always" => Err(HandlerError::transient("always failing")),
        "permanent" => Err(HandlerError::permanent("bad job")),
        "panic" => panic!("handler bug"),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
        "retry-after" if ctx.attempt() == 1 => Err(HandlerError::retry_after(
            "busy",
            Duration::from_millis(700),
        )),
        _ => Ok(()),
    }
}

/// A handler slower than its ack_wait: progress must keep it from being redelivered.
#[queue("queue.slow", ack_wait = "1s", max_deliver = 2)]
async fn slow(id: u64, seen: State<Seen>, ctx: Context) {
    seen.record(id, ctx.attempt());
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

/// Two slots, each call 900ms, ack_wait 1s: the later messages wait for a
/// slot well past ack_wait.
#[queue("queue.queued", ack_wait = "1s", concurrency = 2, max_deliver = 3)]
async fn queued(id: u64, seen: State<Seen>, ctx: Context) {
    seen.record(id, ctx.attempt());
    tokio::time::sleep(Duration::from_millis(900)).await;
}

/// Calls in flight now, and the most seen at once.
#[derive(Clone, Default)]
struct InFlight(Arc<(AtomicUsize, AtomicUsize)>);

/// Blocks its thread before its first `.await`, as CPU-bound work does.
#[queue("queue.blocking", concurrency = 4)]
async fn blocking(_id: u64, in_flight: State<InFlight>) {
    let (now, most) = &*in_flight.0.0;
    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(running, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    now.fetch_sub(1, Ordering::SeqCst);
}

/// Records the bytes as they came, read as one big-endian number.
#[queue("queue.raw")]
async fn raw(bytes: Raw, seen: State<Seen>) {
    let as_number = bytes.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    seen.record(as_number, 1);
}

async fn start(name: &str, handlers: &[&str]) -> (RunningApp, Seen, String) {
    let prefix = unique_prefix(name);
    let seen = Seen::default();
    let app = App::new(config(shared_server(), &prefix, "outcomes"))
        .only(handlers)
        .state(seen.clone())
        .start()
        .await
        .expect("app starts");
    (app, seen, prefix)
}

async fn dead_letters(
    app: &RunningApp,
    prefix: &str,
    n: usize,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = app.publisher().client().clone();
    eventually(
        Duration::from_secs(15),
        &format!("{n} dead letters"),
        || {
            let client = client.clone();
            async move {
                let all = stream_messages(&client, &dlq_stream(prefix)).await;
                (all.len() >= n).then_some(all)
            }
        },
    )
    .await
}

async fn publish(app: &RunningApp, id: u64, mode: &str) {
    app.publisher()
        .publish(
            "queue.job",
            &Job {
                id,
                mode: mode.into(),
            },
        )
        .await
        .expect("published");
}

async fn wait_attempts(seen: &Seen, id: u64, n: usize) -> Vec<u32> {
    eventually(
        Duration::from_secs(15),
        &format!("{n} attempts of job {id}"),
        || async {
            let a = seen.attempts(id);
            (a.len() >= n).then_some(a)
        },
    )
    .await
}

#[tokio::test]
async fn ok_is_acked_and_not_redelivered() {
    let (app, seen, prefix) = start("ok", &["job"]).await;
    publish(&app, 1, "ok").await;
    assert_eq!(wait_attempts(&seen, 1, 1).await, [1]);
    // A later job handled after it proves the loop moved on; job 1 never came back.
    publish(&app, 2, "ok").await;
    wait_attempts(&seen, 2, 1).await;
    let stats = app.stats();
    assert_eq!(stats[0].acked, 2);
    app.shutdown().await.expect("clean shutdown");
    assert_eq!(seen.attempts(1), [1]);
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    assert!(
        stream_messages(&client, &dlq_stream(&prefix))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn transient_errors_are_retried_until_ok() {
    let (app, seen, _) = start("flaky", &["job"]).await;
    publish(&app, 1, "flaky").await;
    assert_eq!(wait_attempts(&seen, 1, 3).await, [1, 2, 3]);
    eventually(Duration::from_secs(5), "the ack", || async {
        (app.stats()[0].acked == 1).then_some(())
    })
    .await;
    assert_eq!(app.stats()[0].retried, 2);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn exhausted_after_max_deliver() {
    let (app, seen, prefix) = start("exhausted", &["job"]).await;
    publish(&app, 7, "always").await;
    let dlq = dead_letters(&app, &prefix, 1).await;
    assert_eq!(seen.attempts(7), [1, 2, 3]);
    let d = &dlq[0];
    assert_eq!(d.subject.as_str(), format!("{prefix}.dlq.queue.job"));
    assert_eq!(header(d, "Jetwire-Dlq-Reason"), Some("exhausted"));
    assert_eq!(header(d, "Jetwire-Dlq-Attempts"), Some("3"));
    assert_eq!(header(d, "Jetwire-Dlq-Error"), Some("always failing"));
    assert_eq!(header(d, "Jetwire-Dlq-Handler"), Some("job"));
    assert_eq!(
        header(d, "Jetwire-Dlq-Stream"),
        Some(jetwire::topology::queue_stream(Some(&prefix)).as_str())
    );
    assert!(header(d, "Jetwire-Dlq-Sequence").is_some_and(|s| s.parse::<u64>().is_ok()));
    assert!(header(d, "Jetwire-Dlq-Failed-At").is_some_and(|t| t.contains('T')));
    assert_eq!(
        header(d, "Content-Type"),
        Some("application/json"),
        "original headers are kept"
    );
    let job: Job = serde_json::from_slice(&d.payload).expect("original payload");
    assert_eq!(job.id, 7);
    // The work-queue original is gone: terminated after the copy was stored.
    let client = app.publisher().client().clone();
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    eventually(Duration::from_secs(5), "the original removed", || {
        let client = client.clone();
        let queue = queue.clone();
        async move {
            stream_messages(&client, &queue)
                .await
                .is_empty()
                .then_some(())
        }
    })
    .await;
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn permanent_is_dead_lettered_at_once() {
    let (app, seen, prefix) = start("permanent", &["job"]).await;
    publish(&app, 3, "permanent").await;
    let dlq = dead_letters(&app, &prefix, 1).await;
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Reason"), Some("permanent"));
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Attempts"), Some("1"));
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Error"), Some("bad job"));
    assert_eq!(seen.attempts(3), [1]);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn undecodable_payloads_keep_their_bytes() {
    let (app, seen, prefix) = start("decode", &["job"]).await;
    let publisher = app.publisher();
    let bad: &[u8] = b"{\"id\": \"not a number\"";
    publisher
        .publish_raw("queue.job", bad, Default::default())
        .await
        .expect("published");
    let dlq = dead_letters(&app, &prefix, 1).await;
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Reason"), Some("decode"));
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Attempts"), Some("1"));
    assert!(header(&dlq[0], "Jetwire-Dlq-Error").is_some_and(|e| e.contains("invalid JSON")));
    assert_eq!(&dlq[0].payload[..], bad);
    assert!(
        seen.0.lock().expect("not poisoned").is_empty(),
        "the handler never ran"
    );
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn panics_are_retried_then_dead_lettered() {
    let (app, seen, prefix) = start("panic", &["job"]).await;
    publish(&app, 4, "panic").await;
    let dlq = dead_letters(&app, &prefix, 1).await;
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Reason"), Some("panic"));
    assert_eq!(
        header(&dlq[0], "Jetwire-Dlq-Error"),
        Some("panic: handler bug")
    );
    assert_eq!(seen.attempts(4), [1, 2, 3]);
    // The process is healthy: the next job is handled.
    publish(&app, 5, "ok").await;
    wait_attempts(&seen, 5, 1).await;
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn timeouts_are_retried_then_dead_lettered() {
    let (app, seen, prefix) = start("timeout", &["job"]).await;
    publish(&app, 6, "slow").await;
    let dlq = dead_letters(&app, &prefix, 1).await;
    assert_eq!(header(&dlq[0], "Jetwire-Dlq-Reason"), Some("timeout"));
    assert_eq!(seen.attempts(6), [1, 2, 3]);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn retry_after_waits_its_own_delay() {
    let (app, seen, _) = start("retry-after", &["job"]).await;
    let t0 = tokio::time::Instant::now();
    publish(&app, 8, "retry-after").await;
    assert_eq!(wait_attempts(&seen, 8, 2).await, [1, 2]);
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "redelivered after the asked delay"
    );
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn progress_keeps_a_slow_call_from_being_redelivered() {
    let (app, seen, _) = start("progress", &["slow"]).await;
    app.publisher()
        .publish("queue.slow", &1u64)
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the slow call acked", || async {
        (app.stats()[0].acked == 1).then_some(())
    })
    .await;
    assert_eq!(
        seen.attempts(1),
        [1],
        "ran 2.5x ack_wait and was never redelivered"
    );
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn raw_payloads_arrive_as_sent() {
    let (app, seen, _) = start("raw", &["raw"]).await;
    app.publisher()
        .publish_raw("queue.raw", &[0xffu8, 0, 1][..], Default::default())
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the raw message", || async {
        (!seen.attempts(0x00ff_0001).is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        seen.attempts(0x00ff_0001),
        [1],
        "the bytes 0xff 0x00 0x01, once"
    );
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn messages_waiting_for_a_slot_are_kept_alive() {
    let (app, seen, _) = start("queued", &["queued"]).await;
    for id in 0..8u64 {
        app.publisher()
            .publish("queue.queued", &id)
            .await
            .expect("published");
    }
    eventually(Duration::from_secs(20), "all 8 acked", || async {
        (app.stats()[0].acked == 8).then_some(())
    })
    .await;
    for id in 0..8 {
        assert_eq!(
            seen.attempts(id),
            [1],
            "message {id} waited ~{}s for a slot and was never redelivered",
            id / 2
        );
    }
    assert_eq!(app.stats()[0].received, 8);
    app.shutdown().await.expect("clean shutdown");
}

/// The loop runs a call itself when it finishes at its first poll; one
/// that blocks there must not make the handler's calls run one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_that_block_before_awaiting_still_run_in_parallel() {
    let prefix = unique_prefix("blocking");
    let in_flight = InFlight::default();
    let app = App::new(config(shared_server(), &prefix, "outcomes"))
        .only(&["blocking"])
        .state(in_flight.clone())
        .start()
        .await
        .expect("app starts");
    for id in 0..12u64 {
        app.publisher()
            .publish("queue.blocking", &id)
            .await
            .expect("published");
    }
    eventually(Duration::from_secs(20), "all 12 acked", || async {
        (app.stats()[0].acked == 12).then_some(())
    })
    .await;
    let most = in_flight.0.1.load(Ordering::SeqCst);
    assert!(
        most >= 2,
        "at most {most} call ran at a time with concurrency = 4"
    );
    app.shutdown().await.expect("clean shutdown");
}
