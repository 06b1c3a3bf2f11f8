//! Middleware, tower layers and extractors against a real nats-server,
//! each beside its `TestApp` twin: a middleware that settles a message
//! without the handler settles it as the handler's own result would; the
//! chain runs in the order added; what a middleware inserts reaches the
//! handler; a tower limit holds across calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::middleware::{Next, from_fn};
use jetwire::testing::TestApp;
use jetwire::{
    App, Context, Delivery, DlqReason, Error, Extension, HandlerError, Headers, PublishOptions,
    State, queue,
};
use jetwire_tests::{config, eventually, header, letters, shared_server, unique_prefix};

/// The attempts each job id's handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<u64, Vec<u32>>>>);

impl Seen {
    fn record(&self, id: u64, attempt: u32) {
        let mut seen = self.0.lock().expect("not poisoned");
        seen.entry(id).or_default().push(attempt);
    }

    fn attempts(&self, id: u64) -> Vec<u32> {
        let seen = self.0.lock().expect("not poisoned");
        seen.get(&id).cloned().unwrap_or_default()
    }
}

#[queue("queue.mwgate", max_deliver = 2, backoff = ["50ms"], timeout = "300ms")]
async fn gated(id: u64, seen: State<Seen>, ctx: Context) -> Result<(), HandlerError> {
    seen.record(id, ctx.attempt());
    Ok(())
}

/// Settles by the `gate` header, mostly without calling the handler.
async fn gate(delivery: Delivery, next: Next) -> Result<(), HandlerError> {
    let gate = delivery.headers().get("gate").map(|g| g.to_string());
    match gate.as_deref() {
        Some("permanent") => Err(HandlerError::permanent("gate: permanent")),
        Some("retry") if delivery.attempt() == 1 => Err(HandlerError::retry_after(
            "gate: later",
            Duration::from_millis(100),
        )),
        Some("discard") => Err(HandlerError::discard("gate: not ours")),
        Some("ok") => Ok(()),
        Some("panic") => panic!("gate: a bug"),
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            next.run(delivery).await
        }
        _ => next.run(delivery).await,
    }
}

/// The gates, by job id.
const GATES: [(u64, &str); 7] = [
    (1, "permanent"),
    (2, "retry"),
    (3, "discard"),
    (4, "ok"),
    (5, "panic"),
    (6, "slow"),
    (7, "none"),
];

fn gated_with(gate: &str) -> PublishOptions {
    PublishOptions::new().header("gate", gate)
}

/// What each gate must come to: the handler's attempts, and the dead
/// letter's reason.
fn expected(gate: &str) -> (Vec<u32>, Option<DlqReason>) {
    match gate {
        "permanent" => (vec![], Some(DlqReason::Permanent)),
        "retry" => (vec![2], None),
        "panic" => (vec![], Some(DlqReason::Panic)),
        "slow" => (vec![], Some(DlqReason::Timeout)),
        "none" => (vec![1], None),
        _ => (vec![], None),
    }
}

#[tokio::test]
async fn a_middleware_settles_each_way_without_the_handler() {
    let prefix = unique_prefix("mwgate");
    let seen = Seen::default();
    let app = App::new(config(shared_server(), &prefix, "mw"))
        .only(&["gated"])
        .state(seen.clone())
        .middleware_for("gated", from_fn(gate))
        .start()
        .await
        .expect("app starts");
    for (id, gate) in GATES {
        app.publisher()
            .publish_with("queue.mwgate", &id, gated_with(gate))
            .await
            .expect("published");
    }
    let client = app.publisher().client().clone();
    let letters = letters(&client, &prefix, 3).await;
    eventually(Duration::from_secs(10), "every job settled", || async {
        let s = &app.stats()[0];
        (s.acked + s.discarded + s.dead_lettered == 7).then_some(())
    })
    .await;
    let stats = app.stats()[0].clone();
    app.shutdown().await.expect("clean shutdown");
    let reasons: HashMap<String, String> = letters
        .iter()
        .map(|l| {
            let gate = header(l, "gate").unwrap_or_default().to_owned();
            let reason = header(l, "Jetwire-Dlq-Reason").unwrap_or_default();
            (gate, reason.to_owned())
        })
        .collect();
    for (id, gate) in GATES {
        let (attempts, reason) = expected(gate);
        assert_eq!(
            seen.attempts(id),
            attempts,
            "the handler's runs for `{gate}`"
        );
        assert_eq!(
            reasons.get(gate).map(String::as_str),
            reason.map(|r| r.as_str()),
            "the dead letter for `{gate}`"
        );
    }
    assert_eq!(
        letters.len(),
        3,
        "one letter each for permanent, panic, slow"
    );
    assert_eq!((stats.acked, stats.discarded), (3, 1), "{stats:?}");
}

#[tokio::test]
async fn a_middleware_settles_each_way_without_the_handler_in_test_app() {
    let seen = Seen::default();
    let app = TestApp::new()
        .only(&["gated"])
        .state(seen.clone())
        .middleware_for("gated", from_fn(gate));
    for (id, gate) in GATES {
        let report = app
            .publish_with("queue.mwgate", &id, gated_with(gate))
            .await;
        let (attempts, reason) = expected(gate);
        assert_eq!(
            seen.attempts(id),
            attempts,
            "the handler's runs for `{gate}`"
        );
        assert_eq!(report.dlq_reason(), reason, "the dead letter for `{gate}`");
        assert_eq!(report.discarded(), gate == "discard", "{gate}");
    }
}

/// Where each middleware and the handler leave a mark, in order.
#[derive(Clone, Default)]
struct Trail(Arc<Mutex<Vec<String>>>);

impl Trail {
    fn push(&self, mark: impl Into<String>) {
        self.0.lock().expect("not poisoned").push(mark.into());
    }

    fn marks(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").clone()
    }
}

#[derive(Clone)]
struct Tenant(String);

#[queue("queue.mworder")]
async fn ordered(
    _id: u64,
    trail: State<Trail>,
    Extension(tenant): Extension<Tenant>,
    headers: Headers,
    ctx: Context,
) -> Result<(), HandlerError> {
    let by = headers
        .get("seen-by")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let own = ctx.headers().get("seen-by").is_some();
    trail.push(format!("handler:{}:{by}:{own}", tenant.0));
    Ok(())
}

/// A middleware that marks its way in and out.
fn marking(trail: &Trail, name: &'static str) -> impl jetwire::middleware::Middleware {
    let trail = trail.clone();
    from_fn(move |mut delivery: Delivery, next: Next| {
        let trail = trail.clone();
        async move {
            trail.push(format!("{name}>"));
            if name == "b" {
                let tenant = delivery.headers().get("tenant").map(|t| t.to_string());
                delivery
                    .extensions_mut()
                    .insert(Tenant(tenant.unwrap_or_default()));
                delivery.headers_mut().insert("seen-by", "b");
            }
            let result = next.run(delivery).await;
            trail.push(format!("<{name}"));
            result
        }
    })
}

const ORDER: [&str; 7] = ["a>", "b>", "c>", "handler:acme:b:false", "<c", "<b", "<a"];

#[tokio::test]
async fn middlewares_run_outermost_first_and_hand_the_handler_their_values() {
    let prefix = unique_prefix("mworder");
    let trail = Trail::default();
    let app = App::new(config(shared_server(), &prefix, "mw"))
        .only(&["ordered"])
        .state(trail.clone())
        .middleware(marking(&trail, "a"))
        .middleware_for("ordered", marking(&trail, "b"))
        .middleware(marking(&trail, "c"))
        .start()
        .await
        .expect("app starts");
    app.publisher()
        .publish_with(
            "queue.mworder",
            &1u64,
            PublishOptions::new().header("tenant", "acme"),
        )
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the chain ran", || async {
        (trail.marks().len() >= ORDER.len()).then_some(())
    })
    .await;
    app.shutdown().await.expect("clean shutdown");
    assert_eq!(trail.marks(), ORDER);

    let trail = Trail::default();
    let app = TestApp::new()
        .only(&["ordered"])
        .state(trail.clone())
        .middleware(marking(&trail, "a"))
        .middleware_for("ordered", marking(&trail, "b"))
        .middleware(marking(&trail, "c"));
    let report = app
        .publish_with(
            "queue.mworder",
            &1u64,
            PublishOptions::new().header("tenant", "acme"),
        )
        .await;
    assert!(report.acked());
    assert_eq!(trail.marks(), ORDER);
}

#[tokio::test]
async fn a_missing_extension_dead_letters_naming_its_type() {
    let trail = Trail::default();
    let app = TestApp::new().only(&["ordered"]).state(trail.clone());
    let report = app.publish("queue.mworder", &1u64).await;
    assert_eq!(report.dlq_reason(), Some(DlqReason::Permanent));
    let error = report.error().unwrap_or_default();
    assert!(
        error.contains("Tenant") && error.contains("extension"),
        "{error}"
    );
    assert!(trail.marks().is_empty(), "the handler did not run");
}

#[tokio::test]
async fn middleware_for_a_handler_that_is_not_there_fails_start() {
    let app = App::new(config(shared_server(), &unique_prefix("mwnone"), "mw"))
        .only(&["gated"])
        .state(Seen::default())
        .middleware_for("gatd", from_fn(gate));
    match app.start().await {
        Err(Error::Config(message)) => {
            assert!(message.contains("middleware_for(\"gatd\")"), "{message}");
            assert!(message.contains("gated"), "names the handlers: {message}");
        }
        Err(other) => panic!("not a config error: {other}"),
        Ok(_) => panic!("started"),
    }
    let checked = TestApp::new()
        .only(&["gated"])
        .state(Seen::default())
        .middleware_for("gatd", from_fn(gate))
        .check();
    assert!(checked.is_err_and(|e| e.to_string().contains("gatd")));
}

/// Calls in flight now, and the most seen at once.
#[derive(Clone, Default)]
struct InFlight(Arc<(AtomicUsize, AtomicUsize)>);

#[queue("queue.mwlimit", concurrency = 8)]
async fn limited(_id: u64, in_flight: State<InFlight>) {
    let (now, most) = &*in_flight.0.0;
    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(running, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    now.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test]
#[allow(clippy::print_stdout)]
async fn a_tower_concurrency_limit_holds_across_calls() {
    let prefix = unique_prefix("mwlimit");
    let in_flight = InFlight::default();
    let app = App::new(config(shared_server(), &prefix, "mw"))
        .only(&["limited"])
        .state(in_flight.clone())
        .layer(tower::limit::ConcurrencyLimitLayer::new(2))
        .start()
        .await
        .expect("app starts");
    for id in 0..40u64 {
        app.publisher()
            .publish("queue.mwlimit", &id)
            .await
            .expect("published");
    }
    eventually(Duration::from_secs(20), "40 calls acked", || async {
        (app.stats()[0].acked == 40).then_some(())
    })
    .await;
    app.shutdown().await.expect("clean shutdown");
    let most = in_flight.0.1.load(Ordering::SeqCst);
    println!("tower limit 2 over concurrency 8: at most {most} calls at once");
    assert_eq!(most, 2, "the layer's limit, reached and never passed");
}
