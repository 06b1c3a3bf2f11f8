//! `HandlerError::pause`: a step that waits is handed back and runs again
//! as the same attempt, so pausing never spends `max_deliver`; a message
//! that pauses past its room spends runs and ends as a dead letter. Live
//! against a real nats-server, and in `TestApp` by the same rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, Context, DlqReason, HandlerError, RunningApp, State, queue};
use jetwire_tests::{
    config, dlq_stream, eventually, header, shared_server, stream_messages, unique_prefix,
};

/// Each message's calls, as the attempts its handler saw.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<u64, Vec<u32>>>>);

impl Calls {
    /// Records a call of message `n`; how many calls it had before.
    fn push(&self, n: u64, attempt: u32) -> usize {
        let mut calls = self.0.lock().expect("not poisoned");
        let seen = calls.entry(n).or_default();
        seen.push(attempt);
        seen.len() - 1
    }
    fn of(&self, n: u64) -> Vec<u32> {
        let calls = self.0.lock().expect("not poisoned");
        calls.get(&n).cloned().unwrap_or_default()
    }
}

/// Pauses four times (more than `max_deliver`), then fails once, then
/// succeeds.
#[queue("queue.pause-steps", max_deliver = 2, backoff = ["20ms"])]
async fn steps(n: u64, calls: State<Calls>, ctx: Context) -> Result<(), HandlerError> {
    match calls.push(n, ctx.attempt()) {
        0..=3 => Err(HandlerError::pause(Duration::from_millis(30))),
        4 => Err(HandlerError::transient("the step's downstream failed once")),
        _ => Ok(()),
    }
}

/// Waits for something that never comes.
#[queue("queue.pause-forever", max_deliver = 2)]
async fn forever(n: u64, calls: State<Calls>, ctx: Context) -> Result<(), HandlerError> {
    calls.push(n, ctx.attempt());
    Err(HandlerError::pause(Duration::from_millis(10)))
}

async fn start(name: &str, handler: &str) -> (RunningApp, Calls, String) {
    let prefix = unique_prefix(name);
    let calls = Calls::default();
    let app = App::new(config(shared_server(), &prefix, "pauses"))
        .only(&[handler])
        .state(calls.clone())
        .start()
        .await
        .expect("app starts");
    (app, calls, prefix)
}

async fn calls_of(calls: &Calls, n: u64, count: usize) -> Vec<u32> {
    eventually(
        Duration::from_secs(20),
        &format!("{count} calls of message {n}"),
        || async {
            let seen = calls.of(n);
            (seen.len() >= count).then_some(seen)
        },
    )
    .await
}

#[tokio::test]
async fn a_pause_runs_again_as_the_same_attempt() {
    let (app, calls, _) = start("pause-steps", "steps").await;
    app.publisher()
        .publish("queue.pause-steps", &1u64)
        .await
        .expect("published");
    let seen = calls_of(&calls, 1, 6).await;
    // Four pauses on run 1, its failure, then run 2: never exhausted,
    // although it was delivered six times with max_deliver = 2.
    assert_eq!(seen, [1, 1, 1, 1, 1, 2]);
    let stats = eventually(Duration::from_secs(10), "the message acked", || async {
        let s = app.stats().into_iter().find(|s| s.handler == "steps")?;
        (s.acked == 1).then_some(s)
    })
    .await;
    assert_eq!(
        (stats.paused, stats.retried, stats.dead_lettered),
        (4, 1, 0)
    );
    app.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_message_that_pauses_past_its_room_spends_runs_and_is_dead_lettered() {
    let (app, calls, prefix) = start("pause-forever", "forever").await;
    app.publisher()
        .publish("queue.pause-forever", &7u64)
        .await
        .expect("published");
    let client = app.publisher().client().clone();
    let letters = eventually(Duration::from_secs(20), "its dead letter", || async {
        let all = stream_messages(&client, &dlq_stream(&prefix)).await;
        (!all.is_empty()).then_some(all)
    })
    .await;
    assert_eq!(header(&letters[0], "Jetwire-Dlq-Reason"), Some("exhausted"));
    // Ten pauses free, the eleventh spends run 1, the twelfth is run 2.
    let mut expected = vec![1; 11];
    expected.push(2);
    assert_eq!(calls.of(7), expected);
    let stats = app.stats().into_iter().find(|s| s.handler == "forever");
    let stats = stats.expect("its stats");
    assert_eq!((stats.paused, stats.retried), (10, 1));
    app.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn test_app_pauses_by_the_same_rule() {
    let calls = Calls::default();
    let app = TestApp::new()
        .only(&["steps", "forever"])
        .state(calls.clone());
    let report = app.publish("queue.pause-steps", &1u64).await;
    assert!(report.acked());
    let run = report.run("steps").expect("its run");
    assert_eq!(run.pauses(), [Duration::from_millis(30); 4]);
    assert_eq!(run.delays(), [Duration::from_millis(20)]);
    assert_eq!(run.attempts(), 2);
    assert_eq!(calls.of(1), [1, 1, 1, 1, 1, 2]);

    let report = app.publish("queue.pause-forever", &7u64).await;
    assert_eq!(report.dlq_reason(), Some(DlqReason::Exhausted));
    let run = report.run("forever").expect("its run");
    assert_eq!(run.pauses().len(), 10);
    assert_eq!(run.attempts(), 2);
    assert_eq!(calls.of(7).len(), 12);
}
