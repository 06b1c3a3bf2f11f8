//! Handlers registered in code (`App::queue_with`, `App::subscribe`, ..)
//! against a real nats-server, each beside an attribute twin or its
//! `TestApp` run: the same durable naming, retries, dead letters, counts
//! and AsyncAPI; a subject or option that breaks a rule fails `start()`
//! naming the handler, where it was registered and the rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, Context, DlqReason, Error, HandlerError, HandlerOptions, State, queue};
use jetwire_tests::{config, eventually, header, letters, shared_server, unique_prefix};

/// The attempts of each job, by (handler, job id).
type Attempts = HashMap<(&'static str, u64), Vec<u32>>;

/// The attempts each (handler, job) saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Attempts>>);

impl Seen {
    fn record(&self, handler: &'static str, id: u64, attempt: u32) {
        let mut seen = self.0.lock().expect("not poisoned");
        seen.entry((handler, id)).or_default().push(attempt);
    }

    fn attempts(&self, handler: &'static str, id: u64) -> Vec<u32> {
        let seen = self.0.lock().expect("not poisoned");
        seen.get(&(handler, id)).cloned().unwrap_or_default()
    }
}

/// What both twins do: odd jobs fail until dead-lettered, even ones pass.
fn body(handler: &'static str, id: u64, seen: &Seen, ctx: &Context) -> Result<(), HandlerError> {
    seen.record(handler, id, ctx.attempt());
    if id % 2 == 1 {
        return Err(HandlerError::transient("odd jobs fail"));
    }
    Ok(())
}

#[queue("queue.twin.attr", max_deliver = 3, backoff = ["50ms"])]
async fn twin_attr(id: u64, seen: State<Seen>, ctx: Context) -> Result<(), HandlerError> {
    body("attr", id, &seen, &ctx)
}

/// No attribute: registered with `queue_with`.
async fn twin_code(id: u64, seen: State<Seen>, ctx: Context) -> Result<(), HandlerError> {
    body("code", id, &seen, &ctx)
}

fn twin_options() -> HandlerOptions {
    HandlerOptions::new().max_deliver(3).backoff(["50ms"])
}

#[tokio::test]
async fn a_handler_from_configuration_behaves_like_its_attribute_twin() {
    let prefix = unique_prefix("twins");
    let seen = Seen::default();
    let app = App::new(config(shared_server(), &prefix, "twins"))
        .only(&["twin_attr"])
        .queue_with("queue.twin.code", twin_code, twin_options())
        .state(seen.clone());
    let doc = app.asyncapi();
    let app = app.start().await.expect("app starts");
    for subject in ["queue.twin.attr", "queue.twin.code"] {
        for id in [1u64, 2] {
            app.publisher()
                .publish(subject, &id)
                .await
                .expect("published");
        }
    }
    let client = app.publisher().client().clone();
    let letters = letters(&client, &prefix, 2).await;
    eventually(Duration::from_secs(10), "both twins settled", || async {
        let stats = app.stats();
        stats
            .iter()
            .all(|s| s.acked + s.dead_lettered == 2)
            .then_some(())
    })
    .await;
    let stats = app.stats();
    app.shutdown().await.expect("clean shutdown");

    for (handler, twin) in [("attr", "twin_attr"), ("code", "twin_code")] {
        assert_eq!(seen.attempts(handler, 1), [1, 2, 3], "{twin}: retried");
        assert_eq!(seen.attempts(handler, 2), [1], "{twin}: acked");
        let s = stats
            .iter()
            .find(|s| s.handler == twin)
            .unwrap_or_else(|| panic!("stats for {twin}"));
        assert_eq!(
            (s.received, s.acked, s.retried, s.dead_lettered),
            (4, 1, 2, 1),
            "{twin}: {s:?}"
        );
        let subject = s.subject.replace('.', "_");
        assert!(s.durable.ends_with(&subject), "{twin}: {}", s.durable);
        let letter = letters
            .iter()
            .find(|l| header(l, "Jetwire-Dlq-Handler") == Some(twin))
            .unwrap_or_else(|| panic!("a letter from {twin}"));
        assert_eq!(header(letter, "Jetwire-Dlq-Reason"), Some("exhausted"));
        assert_eq!(header(letter, "Jetwire-Dlq-Attempts"), Some("3"));
    }
    let x_jetwire = |name: &str| {
        let ops = doc["operations"].as_object().expect("operations");
        let (_, op) = ops
            .iter()
            .find(|(id, _)| id.contains(name))
            .unwrap_or_else(|| panic!("an operation for {name}: {doc}"));
        op["x-jetwire"].clone()
    };
    let (mut attr, mut code) = (x_jetwire("twin_attr"), x_jetwire("twin_code"));
    for twin in [&mut attr, &mut code] {
        let options = twin.as_object_mut().expect("options");
        options.remove("handler");
        options.remove("durable");
    }
    assert_eq!(attr, code, "the options but the name");
    assert_eq!(attr["max_deliver"], 3);
}

#[tokio::test]
async fn an_event_handler_from_configuration_may_be_a_named_closure() {
    let prefix = unique_prefix("closure");
    let seen = Seen::default();
    let subject = "orders.closure.created".to_owned();
    let app = App::new(config(shared_server(), &prefix, "shop"))
        .only(&[])
        .subscribe_with(
            &subject,
            |id: u64, seen: State<Seen>, ctx: Context| async move {
                seen.record("closure", id, ctx.attempt());
            },
            HandlerOptions::new().name("on_closure").deliver("all"),
        )
        .state(seen.clone())
        .start()
        .await
        .expect("app starts");
    app.publisher()
        .publish(&subject, &7u64)
        .await
        .expect("published");
    eventually(Duration::from_secs(10), "the closure ran", || async {
        (!seen.attempts("closure", 7).is_empty()).then_some(())
    })
    .await;
    let stats = app.stats();
    app.shutdown().await.expect("clean shutdown");
    assert_eq!(stats[0].handler, "on_closure");
    assert!(
        stats[0].durable.ends_with("shop-on_closure"),
        "{:?}",
        stats[0]
    );
}

/// The error `start()` fails with for `app`.
async fn start_error(app: App) -> String {
    match app.start().await {
        Ok(running) => {
            running.shutdown().await.expect("clean shutdown");
            panic!("started, but a handler from configuration is wrong")
        }
        Err(Error::Config(message)) => message,
        Err(other) => panic!("not a configuration error: {other}"),
    }
}

#[tokio::test]
async fn a_bad_subject_or_option_from_configuration_fails_start_naming_the_handler() {
    let cases: [(&str, HandlerOptions, &str); 4] = [
        (
            "orders.created",
            HandlerOptions::new(),
            "must start with `queue.`",
        ),
        (
            "queue.twin..code",
            HandlerOptions::new(),
            "is empty: remove the doubled `.`",
        ),
        (
            "queue.twin.code",
            HandlerOptions::new().max_deliver(2).backoff(["1s", "5s"]),
            "`backoff` has 2 delays but `max_deliver = 2` allows at most 1",
        ),
        (
            "queue.twin.code",
            HandlerOptions::new().deliver("all"),
            "`deliver` applies only to #[subscribe]",
        ),
    ];
    for (subject, options, rule) in cases {
        let app = App::new(config(shared_server(), &unique_prefix("badcfg"), "bad"))
            .only(&[])
            .queue_with(subject, twin_code, options);
        let message = start_error(app).await;
        assert!(message.contains("handler `"), "{message}");
        assert!(message.contains("::twin_code`"), "{message}");
        assert!(message.contains("configured.rs:"), "where: {message}");
        assert!(message.contains(rule), "{rule:?} in {message}");
    }
    let closure = App::new(config(shared_server(), &unique_prefix("badcfg"), "bad"))
        .only(&[])
        .queue("queue.anon", |_: u64| async {});
    let message = start_error(closure).await;
    assert!(message.contains("has no name"), "{message}");
}

#[tokio::test]
async fn handlers_from_configuration_in_test_app() {
    let seen = Seen::default();
    let app = TestApp::new()
        .only(&["twin_attr"])
        .queue_with("queue.twin.code", twin_code, twin_options())
        .state(seen.clone());
    for (subject, handler) in [("queue.twin.attr", "attr"), ("queue.twin.code", "code")] {
        let failed = app.publish(subject, &1u64).await;
        assert_eq!(failed.dlq_reason(), Some(DlqReason::Exhausted), "{handler}");
        assert_eq!(failed.attempts(), 3, "{handler}");
        assert!(app.publish(subject, &2u64).await.acked(), "{handler}");
        assert_eq!(seen.attempts(handler, 1), [1, 2, 3], "{handler}");
    }
    let bad = TestApp::new().only(&[]).queue("orders.created", twin_code);
    let err = bad.check().expect_err("a subject outside `queue.`");
    assert!(err.to_string().contains("twin_code"), "{err}");
}

async fn doubled(n: u64) -> Result<u64, HandlerError> {
    Ok(n * 2)
}

async fn unit(_: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn an_output_and_groups_from_configuration_in_test_app() {
    let app = TestApp::new().only(&[]).groups(&["gpu"]).queue_with(
        "queue.double.{group}",
        doubled,
        HandlerOptions::new().output("numbers.doubled"),
    );
    let report = app.publish("queue.double.gpu", &21u64).await;
    assert!(report.acked(), "{:?}", report.error());
    let out = app.published("numbers.doubled");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].decode::<u64>().expect("a number"), 42);

    let no_output = TestApp::new().only(&[]).queue("queue.double.cpu", doubled);
    let err = no_output.check().expect_err("an Ok value and no output");
    assert!(err.to_string().contains("has no `output`"), "{err}");
    let nothing_to_publish = TestApp::new().only(&[]).queue_with(
        "queue.unit",
        unit,
        HandlerOptions::new().output("numbers.unit"),
    );
    let err = nothing_to_publish
        .check()
        .expect_err("an output and nothing to publish");
    assert!(
        err.to_string().contains("publishes the `Ok` value"),
        "{err}"
    );
}

#[tokio::test]
async fn a_partitioned_handler_from_configuration_in_test_app() {
    let app = TestApp::new().only(&[]).queue_with(
        "queue.parts.*",
        unit,
        HandlerOptions::new().partitions(4),
    );
    let keyed = jetwire::PublishOptions::new().key("customer-7");
    let report = app.publish_with("queue.parts.a", &1u64, keyed).await;
    let run = report.run("unit").expect("the handler ran");
    assert!(
        run.partition().is_some_and(|p| p < 4),
        "{:?}",
        run.partition()
    );

    let ends_in_tail = TestApp::new().only(&[]).queue_with(
        "queue.parts.>",
        unit,
        HandlerOptions::new().partitions(4),
    );
    let err = ends_in_tail.check().expect_err("a partitioned `>`");
    assert!(err.to_string().contains("cannot end in `>`"), "{err}");
}
