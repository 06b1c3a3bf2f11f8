//! Messages pulled ahead and handed back unrun do not use up a handler's
//! deliveries: with `max_deliver = 1` nothing is dead-lettered without its
//! handler having run, and `ctx.attempt()` counts runs, not deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Context, HandlerError, State, queue};
use jetwire_tests::{config, eventually, shared_server, stream_messages, unique_prefix};

/// Each message's runs, as the attempts its handler saw.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<u64, Vec<u32>>>>);

impl Runs {
    fn push(&self, n: u64, attempt: u32) {
        let mut runs = self.0.lock().expect("not poisoned");
        runs.entry(n).or_default().push(attempt);
    }
    fn snapshot(&self) -> HashMap<u64, Vec<u32>> {
        self.0.lock().expect("not poisoned").clone()
    }
    fn calls(&self) -> usize {
        self.snapshot().values().map(Vec::len).sum()
    }
}

#[queue("queue.hb-once", max_deliver = 1, concurrency = 2)]
async fn once(n: u64, runs: State<Runs>, ctx: Context) {
    runs.push(n, ctx.attempt());
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Fails its first run of each message, succeeds on the second.
#[queue("queue.hb-twice", max_deliver = 2, concurrency = 2, backoff = ["10ms"])]
async fn twice(n: u64, runs: State<Runs>, ctx: Context) -> Result<(), HandlerError> {
    runs.push(n, ctx.attempt());
    tokio::time::sleep(Duration::from_millis(100)).await;
    match ctx.attempt() {
        1 => Err(HandlerError::transient("first run fails")),
        _ => Ok(()),
    }
}

const MESSAGES: u64 = 60;

/// Starts `handler` under `prefix`, publishes the messages, shuts down
/// once the first few calls began (the rest pulled ahead and handed
/// back), then starts it again and waits until `done` says every message
/// is through. Returns the runs, and how many calls the first app made.
async fn across_a_shutdown(
    prefix: &str,
    handler: &str,
    subject: &str,
    done: impl Fn(&HashMap<u64, Vec<u32>>) -> bool,
) -> (HashMap<u64, Vec<u32>>, usize) {
    let runs = Runs::default();
    let start = || async {
        App::new(config(shared_server(), prefix, "hb"))
            .only(&[handler])
            .state(runs.clone())
            .start()
            .await
            .expect("the app starts")
    };
    let first = start().await;
    let publisher = first.publisher();
    for n in 0..MESSAGES {
        publisher.publish(subject, &n).await.expect("publish");
    }
    eventually(Duration::from_secs(20), "the first calls", || async {
        (runs.calls() >= 3).then_some(())
    })
    .await;
    first.shutdown().await.expect("shutdown");
    let first_calls = runs.calls();
    assert!(
        first_calls < MESSAGES as usize / 2,
        "the first app should stop with most messages pulled ahead unrun; it made {first_calls} calls"
    );
    let second = start().await;
    // Well within `ack_wait` (30 s): no message was lost in flight as the
    // first app closed its inbox, to come back only after it.
    eventually(Duration::from_secs(20), "every message through", || async {
        done(&runs.snapshot()).then_some(())
    })
    .await;
    second.shutdown().await.expect("shutdown");
    (runs.snapshot(), first_calls)
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout)]
async fn with_max_deliver_1_nothing_handed_back_is_dead_lettered_unrun() {
    let prefix = unique_prefix("hb-once");
    let (runs, first_calls) = across_a_shutdown(&prefix, "once", "queue.hb-once", |runs| {
        runs.len() == MESSAGES as usize
    })
    .await;
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let letters = stream_messages(&client, &jetwire_tests::dlq_stream(&prefix)).await;
    assert_eq!(
        letters.len(),
        0,
        "dead letters of messages handed back unrun at shutdown"
    );
    for (n, attempts) in &runs {
        assert_eq!(attempts, &[1], "message {n}: its runs' attempts");
    }
    println!(
        "handed back at shutdown: {} of {MESSAGES}; each ran once after the restart, none dead-lettered",
        MESSAGES as usize - first_calls
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_count_runs_not_hand_backs() {
    let prefix = unique_prefix("hb-twice");
    let (runs, _) = across_a_shutdown(&prefix, "twice", "queue.hb-twice", |runs| {
        runs.len() == MESSAGES as usize && runs.values().all(|a| a.len() >= 2)
    })
    .await;
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let letters = stream_messages(&client, &jetwire_tests::dlq_stream(&prefix)).await;
    assert_eq!(letters.len(), 0, "dead letters");
    for (n, attempts) in &runs {
        assert_eq!(attempts, &[1, 2], "message {n}: its runs' attempts");
    }
}
