//! A background task that panics stops the app: `run` returns an error
//! naming the task and the panic instead of running on without that task. The panic is
//! injected through a tracing subscriber, the one piece of user code that
//! runs inside a handler's loop rather than inside a call.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use jetwire::{App, Publisher, queue};
use jetwire_tests::{config, eventually, shared_server, unique_prefix};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[queue("queue.sup-ok")]
async fn sup_ok(_n: u64) {}

/// Panics on the first `acked` event: the loop's own ack of a call that
/// finished at its first poll, which runs in the loop's task.
#[derive(Default)]
struct PanicOnFirstAck {
    fired: AtomicBool,
    spans: AtomicU64,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for PanicOnFirstAck {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.spans.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0 == "acked" && !self.fired.swap(true, Ordering::Relaxed) {
            panic!("injected: a tracing subscriber panicked in a handler loop");
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_background_task_stops_the_app_with_an_error() {
    tracing::subscriber::set_global_default(PanicOnFirstAck::default())
        .expect("the only subscriber of this test binary");
    let server = shared_server();
    let prefix = unique_prefix("sup");
    let config = config(server, &prefix, "sup");
    let running = tokio::spawn(App::new(config.clone()).only(&["sup_ok"]).run());
    let publisher = Publisher::connect(&config).await.expect("connect");
    eventually(Duration::from_secs(20), "a stored message", || {
        let publisher = publisher.clone();
        async move { publisher.publish("queue.sup-ok", &1u64).await.ok() }
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("run returns on its own, without a signal")
        .expect("run does not panic");
    let err = ended.expect_err("a panicking loop is an error").to_string();
    assert!(
        err.contains("the loop of handler `supervision::sup_ok` panicked"),
        "names the task: {err}"
    );
    assert!(err.contains("injected"), "{err}");
}
