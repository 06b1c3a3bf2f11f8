//! `TestApp` reproduces every row of the outcome table, routes follow-ups,
//! gives an event to every handler of its subject, and runs the startup
//! checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{Context, DlqReason, HandlerError, Raw, ResultExt, State, queue, subscribe};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct OrderCreated {
    order_id: u64,
    email: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SendEmail {
    to: String,
    body: String,
}

/// Fails with a transient error until it has been called `fail_first` times.
#[derive(Clone, Default)]
struct Flaky {
    calls: Arc<AtomicU32>,
    fail_first: u32,
}

#[subscribe("orders.created")]
async fn on_order_created(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish(
        "queue.email",
        &SendEmail {
            to: order.email,
            body: "thanks".into(),
        },
    )
    .await?;
    Ok(())
}

#[queue("queue.email", max_deliver = 5, backoff = ["1s", "5s", "30s"], concurrency = 8)]
async fn send_email(job: SendEmail, flaky: State<Flaky>) -> Result<(), HandlerError> {
    if !job.to.contains('@') {
        return Err(HandlerError::permanent("no @ in address"));
    }
    let n = flaky.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= flaky.fail_first {
        return Err(std::io::Error::other("smtp down").into());
    }
    Ok(())
}

#[queue("queue.panics", max_deliver = 2)]
async fn panics(_job: u32) -> Result<(), HandlerError> {
    panic!("boom")
}

#[queue("queue.slow", max_deliver = 2, timeout = "20ms")]
async fn slow(_job: u32) {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

#[queue("queue.later", max_deliver = 3)]
async fn later(_job: u32) -> Result<(), HandlerError> {
    Err(HandlerError::retry_after(
        "rate limited",
        Duration::from_secs(42),
    ))
}

#[queue("queue.parse", max_deliver = 3)]
async fn parse(raw: Raw, ctx: Context) -> Result<(), HandlerError> {
    let text = std::str::from_utf8(&raw).permanent()?;
    let _n: u32 = text.parse().permanent()?;
    assert_eq!(ctx.handler(), "parse");
    Ok(())
}

fn email(to: &str, body: &str) -> SendEmail {
    SendEmail {
        to: to.into(),
        body: body.into(),
    }
}

fn app(fail_first: u32) -> (TestApp, Arc<AtomicU32>) {
    let flaky = Flaky {
        calls: Arc::default(),
        fail_first,
    };
    let calls = flaky.calls.clone();
    (TestApp::new().state(flaky), calls)
}

#[tokio::test]
async fn ok_is_acked_once() {
    let (app, calls) = app(0);
    let report = app.publish("queue.email", &email("a@b.c", "hi")).await;
    assert!(report.acked());
    assert!(!report.dead_lettered());
    assert_eq!(report.attempts(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transient_errors_retry_with_virtual_backoff() {
    let (app, calls) = app(3);
    let report = app.publish("queue.email", &email("a@b.c", "")).await;
    assert!(report.acked(), "{report:?}");
    assert_eq!(report.attempts(), 4);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let run = report.run("send_email").expect("send_email ran");
    let s = Duration::from_secs;
    assert_eq!(run.delays(), &[s(1), s(5), s(30)]);
    assert_eq!(run.errors(), &["smtp down", "smtp down", "smtp down"]);
}

#[tokio::test]
async fn transient_on_the_last_attempt_is_exhausted() {
    let (app, _) = app(100);
    let report = app.publish("queue.email", &email("a@b.c", "")).await;
    assert!(report.dead_lettered());
    assert_eq!(report.dlq_reason(), Some(DlqReason::Exhausted));
    assert_eq!(report.attempts(), 5);
    let s = Duration::from_secs;
    assert_eq!(
        report.run("send_email").map(|r| r.delays().to_vec()),
        Some(vec![s(1), s(5), s(30), s(30)])
    );
    let dlq = app.published("dlq.queue.email");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header("Jetwire-Dlq-Reason"), Some("exhausted"));
    assert_eq!(dlq[0].header("Jetwire-Dlq-Attempts"), Some("5"));
    assert_eq!(dlq[0].header("Jetwire-Dlq-Error"), Some("smtp down"));
}

#[tokio::test]
async fn permanent_is_dead_lettered_at_once() {
    let (app, calls) = app(0);
    let report = app.publish("queue.email", &email("nobody", "")).await;
    assert!(report.dead_lettered());
    assert_eq!(report.dlq_reason(), Some(DlqReason::Permanent));
    assert_eq!(report.attempts(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let dlq = app.published("dlq.queue.email");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header("Jetwire-Dlq-Handler"), Some("send_email"));
    assert_eq!(dlq[0].header("Jetwire-Dlq-Error"), Some("no @ in address"));
    assert_eq!(dlq[0].header("Jetwire-Dlq-Stream"), Some("QUEUE"));
    assert!(
        dlq[0]
            .header("Jetwire-Dlq-Failed-At")
            .is_some_and(|t| t.ends_with('Z'))
    );
    let back: SendEmail = dlq[0].decode().expect("original payload");
    assert_eq!(back.to, "nobody");
}

#[tokio::test]
async fn undecodable_payload_is_dead_lettered_with_its_bytes() {
    let (app, calls) = app(0);
    let report = app.publish_raw("queue.email", &b"{not json"[..]).await;
    assert_eq!(report.dlq_reason(), Some(DlqReason::Decode));
    assert_eq!(report.attempts(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let dlq = app.published("dlq.queue.email");
    assert_eq!(&dlq[0].payload()[..], b"{not json");
    assert!(
        dlq[0]
            .header("Jetwire-Dlq-Error")
            .is_some_and(|e| e.contains("invalid JSON"))
    );

    let wrong_type = app
        .publish("queue.email", &serde_json::json!({"to": 5}))
        .await;
    assert_eq!(wrong_type.dlq_reason(), Some(DlqReason::Decode));
}

#[tokio::test]
async fn panics_retry_then_dead_letter_as_panic() {
    let app = TestApp::new().only(&["panics"]);
    let report = app.publish("queue.panics", &1).await;
    assert_eq!(report.attempts(), 2);
    assert_eq!(report.dlq_reason(), Some(DlqReason::Panic));
    assert_eq!(report.error(), Some("panic: boom"));
}

#[tokio::test]
async fn timeouts_retry_then_dead_letter_as_timeout() {
    let app = TestApp::new().only(&["slow"]);
    let report = app.publish("queue.slow", &1).await;
    assert_eq!(report.attempts(), 2);
    assert_eq!(report.dlq_reason(), Some(DlqReason::Timeout));
}

#[tokio::test]
async fn retry_after_uses_its_own_delay() {
    let app = TestApp::new().only(&["later"]);
    let report = app.publish("queue.later", &1).await;
    assert_eq!(report.dlq_reason(), Some(DlqReason::Exhausted));
    let run = report.run("later").expect("ran");
    assert_eq!(
        run.delays(),
        &[Duration::from_secs(42), Duration::from_secs(42)]
    );
}

#[tokio::test]
async fn raw_payloads_and_result_ext() {
    let app = TestApp::new().only(&["parse"]);
    assert!(app.publish_raw("queue.parse", &b"42"[..]).await.acked());
    let bad = app.publish_raw("queue.parse", &b"forty-two"[..]).await;
    assert_eq!(bad.dlq_reason(), Some(DlqReason::Permanent));
    assert_eq!(bad.attempts(), 1);
}

#[tokio::test]
async fn follow_ups_reach_their_handlers_and_carry_correlation() {
    let (app, calls) = app(0);
    let report = app
        .publish(
            "orders.created",
            &OrderCreated {
                order_id: 7,
                email: "x@y.z".into(),
            },
        )
        .await;
    assert!(report.acked());
    assert_eq!(report.follow_ups().len(), 1);
    assert!(report.follow_ups()[0].acked());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let sent = app.published("queue.email");
    assert_eq!(sent.len(), 1);
    let job: SendEmail = sent[0].decode().expect("json");
    assert_eq!(
        job,
        SendEmail {
            to: "x@y.z".into(),
            body: "thanks".into()
        }
    );
    assert_eq!(sent[0].header("Content-Type"), Some("application/json"));
    assert!(sent[0].header("Jetwire-Correlation-Id").is_some());
    assert!(sent[0].header("Nats-Msg-Id").is_some());
}

#[tokio::test]
async fn follow_up_failures_are_their_own() {
    let (app, _) = app(0);
    let report = app
        .publish(
            "orders.created",
            &OrderCreated {
                order_id: 8,
                email: "bad".into(),
            },
        )
        .await;
    assert!(report.acked());
    assert_eq!(
        report.follow_ups()[0].dlq_reason(),
        Some(DlqReason::Permanent)
    );
    assert_eq!(app.dead_letters().len(), 1);
}

#[tokio::test]
async fn unrouted_messages_are_reported_unhandled() {
    let (app, _) = app(0);
    let report = app.publish("nobody.listens", &1).await;
    assert!(!report.handled());
    assert!(!report.acked());
}

#[tokio::test]
async fn missing_state_fails_the_check_naming_handler_and_type() {
    let err = TestApp::new()
        .check()
        .expect_err("Flaky was not given")
        .to_string();
    assert!(err.contains("send_email"), "{err}");
    assert!(err.contains("State<testapp::Flaky>"), "{err}");
    assert!(err.contains(".state("), "{err}");
}

/// What `forger`'s publish under `dlq.` returned (a static, so that the
/// tests that run every handler need no state for it).
static FORGERY: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

#[queue("queue.ta-forger")]
async fn forger(_n: u64, ctx: Context) {
    let refused = ctx
        .publish("dlq.queue.email", &1u64)
        .await
        .err()
        .map(|e| e.to_string());
    *FORGERY.lock().expect("not poisoned") = refused;
}

#[tokio::test]
async fn a_handler_cannot_forge_a_dead_letter() {
    let app = TestApp::new().only(&["forger"]);
    assert!(app.publish("queue.ta-forger", &1u64).await.acked());
    let refused = FORGERY.lock().expect("not poisoned").clone();
    let refused = refused.expect("publishing under dlq. is refused");
    assert!(refused.contains("reserved for dead letters"), "{refused}");
    assert!(app.dead_letters().is_empty());
}

/// Two services' handlers of one event: each gets its own copy, and one
/// failing does not touch the other. They record into a static: the other
/// tests' `TestApp`s have every handler of this file, and no state for
/// these.
static FANNED: std::sync::Mutex<Vec<(&str, u64)>> = std::sync::Mutex::new(Vec::new());

#[subscribe("fanout.shipped")]
async fn shipped_for_billing(order: u64) -> Result<(), HandlerError> {
    FANNED
        .lock()
        .expect("not poisoned")
        .push(("billing", order));
    Ok(())
}

#[subscribe("fanout.shipped", max_deliver = 2)]
async fn shipped_for_email(order: u64) -> Result<(), HandlerError> {
    FANNED.lock().expect("not poisoned").push(("email", order));
    Err(HandlerError::transient("mail server down"))
}

#[tokio::test]
async fn an_event_reaches_every_handler_of_its_subject() {
    let app = TestApp::new().only(&["shipped_for_billing", "shipped_for_email"]);
    let report = app.publish("fanout.shipped", &7u64).await;
    let mut handlers: Vec<&str> = report.runs().iter().map(|r| r.handler()).collect();
    handlers.sort_unstable();
    assert_eq!(handlers, ["shipped_for_billing", "shipped_for_email"]);
    let billing = report.run("shipped_for_billing").expect("billing ran");
    assert!(billing.acked());
    assert_eq!(billing.attempts(), 1);
    let email = report.run("shipped_for_email").expect("email ran");
    assert_eq!(email.dlq_reason(), Some(DlqReason::Exhausted));
    assert_eq!(email.attempts(), 2);
    let mut calls = FANNED.lock().expect("not poisoned").clone();
    calls.sort_unstable();
    assert_eq!(calls, [("billing", 7), ("email", 7), ("email", 7)]);
}
