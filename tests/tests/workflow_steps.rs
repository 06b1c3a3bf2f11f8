//! Workflow steps. `HandlerError::pause`: a step that waits is handed back
//! and runs again as the same attempt, so pausing never spends
//! `max_deliver`; a message that pauses past its room spends runs and ends
//! as a dead letter. `HandlerError::continue_with`: a step that is done
//! goes on as a new message to the same handler, its runs counted afresh,
//! its correlation id and key kept. `Context::stream_output`: partial
//! results in order, each delivery's closed by its end, read by a
//! follower. Live against a real nats-server, and in `TestApp` by the same
//! rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use jetwire::testing::TestApp;
use jetwire::{
    App, Context, DlqReason, HandlerError, Output, PublishOptions, RunningApp, State, queue,
    subscribe,
};
use jetwire_tests::{
    config, dlq_stream, eventually, header, shared_server, stream_messages, unique_prefix,
};
use serde::{Deserialize, Serialize};

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

/// With `max_deliver = 1`: pauses on its first call for 3 s, then
/// succeeds; any call that is not run 1 would have been refused.
#[queue("queue.pause-restart", max_deliver = 1)]
async fn restarted(n: u64, calls: State<Calls>, ctx: Context) -> Result<(), HandlerError> {
    match calls.push(n, ctx.attempt()) {
        0 => Err(HandlerError::pause(Duration::from_secs(3))),
        _ => Ok(()),
    }
}

/// Waits for something that never comes.
#[queue("queue.pause-forever", max_deliver = 2)]
async fn forever(n: u64, calls: State<Calls>, ctx: Context) -> Result<(), HandlerError> {
    calls.push(n, ctx.attempt());
    Err(HandlerError::pause(Duration::from_millis(10)))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Export {
    page: u64,
    pages: u64,
}

/// What one call of a page saw: (page, attempt, message id, correlation
/// id, key).
type Seen = (u64, u32, String, String, Option<String>);

/// Every call of every page.
#[derive(Clone, Default)]
struct Pages(Arc<Mutex<Vec<Seen>>>);

impl Pages {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Each page fails its first run and continues on its second, so only
/// runs counted afresh per page get through with `max_deliver = 2`.
#[queue("queue.steps-export", max_deliver = 2, backoff = ["20ms"])]
async fn export(job: Export, pages: State<Pages>, ctx: Context) -> Result<(), HandlerError> {
    let key = ctx.headers().get("Jetwire-Key").map(|k| k.to_string());
    pages.0.0.lock().expect("not poisoned").push((
        job.page,
        ctx.attempt(),
        ctx.message_id().to_owned(),
        ctx.correlation_id().to_owned(),
        key,
    ));
    if ctx.attempt() == 1 {
        return Err(HandlerError::transient("the page's first run fails"));
    }
    if job.page + 1 < job.pages {
        let next = Export {
            page: job.page + 1,
            ..job
        };
        return Err(HandlerError::continue_with(&next));
    }
    Ok(())
}

/// An event handler cannot continue: its subject reaches every app.
#[subscribe("steps.event")]
async fn on_event(n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::continue_with(&(n + 1)))
}

/// Checks what four pages of one export saw: each page ran twice, as
/// attempts 1 and 2; page `p` came under an id ending `:next<p>`; every
/// page kept the first one's correlation id and key.
fn check_pages(seen: &[Seen]) {
    let runs: Vec<(u64, u32)> = seen.iter().map(|(p, a, ..)| (*p, *a)).collect();
    assert_eq!(
        runs,
        [
            (0, 1),
            (0, 2),
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
            (3, 1),
            (3, 2)
        ]
    );
    let correlation = &seen[0].3;
    for (page, _, id, corr, key) in seen {
        if *page > 0 {
            assert!(id.ends_with(&format!(":next{page}")), "{id}");
        }
        assert_eq!(corr, correlation, "page {page} left the conversation");
        assert_eq!(key.as_deref(), Some("export-7"), "page {page} lost its key");
    }
}

/// Streams `pages` chunks on each run; the first run then fails.
#[queue("queue.steps-render", max_deliver = 2, backoff = ["20ms"])]
async fn render(pages: u64, ctx: Context) -> Result<(), HandlerError> {
    for n in 0..pages {
        ctx.stream_output(&(ctx.attempt(), n)).await?;
    }
    if ctx.attempt() == 1 {
        return Err(HandlerError::transient("the first render fails"));
    }
    Ok(())
}

/// What a follower of three pages rendered must see: the first delivery's
/// chunks and its end saying another comes, then the second's, then the
/// last end.
fn check_rendered(items: &[Output]) {
    let mut expected = Vec::new();
    for (delivery, last) in [(1u32, false), (2, true)] {
        for n in 0..3u64 {
            let payload = serde_json::to_vec(&(delivery, n)).expect("json").into();
            expected.push(Output::Chunk { delivery, payload });
        }
        expected.push(Output::End { delivery, last });
    }
    assert_eq!(items, expected);
}

async fn start(name: &str, handler: &str) -> (RunningApp, Calls, String) {
    let prefix = unique_prefix(name);
    let calls = Calls::default();
    let app = App::new(config(shared_server(), &prefix, "pauses"))
        .only(&[handler])
        .state(calls.clone())
        .state(Pages::default())
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

/// The pause is the server's record, not the process's: an app stopped
/// during it and another started after runs the message as run 1 still.
#[tokio::test]
async fn a_pause_outlives_the_app_that_paused() {
    let prefix = unique_prefix("pause-restart");
    let calls = Calls::default();
    let start = || async {
        App::new(config(shared_server(), &prefix, "pauses"))
            .only(&["restarted"])
            .state(calls.clone())
            .start()
            .await
            .expect("app starts")
    };
    let first = start().await;
    first
        .publisher()
        .publish("queue.pause-restart", &3u64)
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the pause", || async {
        let s = first
            .stats()
            .into_iter()
            .find(|s| s.handler == "restarted")?;
        (s.paused == 1).then_some(())
    })
    .await;
    first.shutdown().await.expect("shutdown");
    assert_eq!(calls.of(3), [1], "the first app ran it once, and paused");
    let second = start().await;
    assert_eq!(calls_of(&calls, 3, 2).await, [1, 1]);
    let stats = eventually(Duration::from_secs(10), "the message acked", || async {
        let s = second
            .stats()
            .into_iter()
            .find(|s| s.handler == "restarted")?;
        (s.acked == 1).then_some(s)
    })
    .await;
    assert_eq!(stats.dead_lettered, 0);
    second.shutdown().await.expect("shutdown");
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
async fn a_step_that_continues_goes_on_as_a_new_message_with_fresh_runs() {
    let prefix = unique_prefix("steps-export");
    let pages = Pages::default();
    let app = App::new(config(shared_server(), &prefix, "steps"))
        .only(&["export"])
        .state(pages.clone())
        .start()
        .await
        .expect("app starts");
    let first = Export { page: 0, pages: 4 };
    let options = PublishOptions::new().key("export-7");
    app.publisher()
        .publish_with("queue.steps-export", &first, options)
        .await
        .expect("published");
    let stats = eventually(Duration::from_secs(20), "the last page acked", || async {
        let s = app.stats().into_iter().find(|s| s.handler == "export")?;
        (s.acked == 1).then_some(s)
    })
    .await;
    check_pages(&pages.all());
    assert_eq!(
        (stats.continued, stats.retried, stats.dead_lettered),
        (3, 4, 0)
    );
    app.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn test_app_continues_by_the_same_rule_and_refuses_it_on_events() {
    let pages = Pages::default();
    let app = TestApp::new()
        .only(&["export", "on_event"])
        .state(pages.clone());
    let first = Export { page: 0, pages: 4 };
    let options = PublishOptions::new().key("export-7");
    let report = app
        .publish_with("queue.steps-export", &first, options)
        .await;
    assert!(report.acked());
    assert!(report.run("export").expect("its run").continued());
    // Every later page is delivered in turn, a follow-up of the first.
    let later = report.follow_ups();
    assert_eq!(later.len(), 3);
    let last = later.last().expect("the last page");
    assert!(
        later[..2]
            .iter()
            .all(|r| r.run("export").is_some_and(|r| r.continued()))
    );
    assert!(last.acked() && !last.run("export").expect("its run").continued());
    check_pages(&pages.all());

    let report = app.publish("steps.event", &1u64).await;
    assert_eq!(report.dlq_reason(), Some(DlqReason::Permanent));
    let error = report.error().expect("the reason");
    assert!(error.contains("#[queue]"), "{error}");
    assert!(report.follow_ups().is_empty());
}

#[tokio::test]
async fn a_follower_reads_each_deliverys_output_in_order_until_the_last_end() {
    let prefix = unique_prefix("steps-render");
    let app = App::new(config(shared_server(), &prefix, "steps"))
        .only(&["render"])
        .start()
        .await
        .expect("app starts");
    let publisher = app.publisher();
    // Following before the publish: nothing is missed.
    let follower = publisher
        .follow_output("render-1", "render")
        .await
        .expect("following");
    let options = PublishOptions::new().message_id("render-1");
    publisher
        .publish_with("queue.steps-render", &3u64, options)
        .await
        .expect("published");
    let mut follower = follower;
    let mut got = Vec::new();
    while let Ok(Some(i)) = tokio::time::timeout(Duration::from_secs(3), follower.next()).await {
        eprintln!("ITEM {i:?}");
        got.push(i);
    }
    eprintln!("STATS {:?}", app.stats());
    let items = got;
    let items: Vec<Output> = items.into_iter().map(|i| i.expect("an item")).collect();
    check_rendered(&items);
    // A follower that comes late reads the same from the start.
    let late = publisher
        .follow_output("render-1", "render")
        .await
        .expect("following");
    let again: Vec<Output> = late.map(|i| i.expect("an item")).collect().await;
    assert_eq!(again, items);
    app.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn test_app_streams_output_by_the_same_rule() {
    let app = TestApp::new().only(&["render"]);
    let options = PublishOptions::new().message_id("render-1");
    let report = app.publish_with("queue.steps-render", &3u64, options).await;
    assert!(report.acked());
    check_rendered(&app.output("render-1", "render"));
    assert!(app.output("render-1", "other").is_empty());
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
