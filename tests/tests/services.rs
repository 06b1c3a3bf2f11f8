//! Services beside the handlers: started once connected, stopped when the
//! app drains, and an error, a panic or an early end stops the app with
//! an error naming the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jetwire::{App, BoxFuture, Config, Error, Service, ServiceContext};
use jetwire_tests::{eventually, shared_server, stream_messages, unique_prefix};

fn config(prefix: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("svc")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid")
}

/// Publishes once, then waits for shutdown and notes that it saw it.
struct Announcer {
    stopped: Arc<AtomicBool>,
}

impl Service for Announcer {
    fn name(&self) -> &str {
        "announcer"
    }
    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async move {
            ctx.publisher().ensure_streams(&["svc.hello"]).await?;
            ctx.publisher().publish("svc.hello", &"up").await?;
            ctx.shutdown().await;
            self.stopped.store(true, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_service_runs_on_the_apps_connection_and_stops_when_it_drains() {
    let prefix = unique_prefix("svc-ok");
    let stopped = Arc::new(AtomicBool::new(false));
    let running = App::new(config(&prefix))
        .only(&[])
        .service(Announcer {
            stopped: stopped.clone(),
        })
        .start()
        .await
        .expect("starts");
    let client = running.publisher().client().clone();
    let stream = jetwire::topology::default_stream(Some(&prefix), "svc.hello");
    eventually(Duration::from_secs(10), "the service's message", || async {
        (stream_messages(&client, &stream).await.len() == 1).then_some(())
    })
    .await;
    assert!(!stopped.load(Ordering::SeqCst));
    running.shutdown().await.expect("a clean shutdown");
    assert!(
        stopped.load(Ordering::SeqCst),
        "shutdown did not wait for the service"
    );
}

/// Fails in one of three ways once started.
struct Broken(&'static str);

impl Service for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn run(self: Box<Self>, _ctx: ServiceContext) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async move {
            match self.0 {
                "error" => Err(Error::Config("boom".into())),
                "panic" => panic!("kaboom"),
                _ => Ok(()),
            }
        })
    }
}

#[tokio::test]
async fn an_error_a_panic_or_an_early_end_stops_the_app_naming_the_service() {
    for (how, needle) in [
        (
            "error",
            "service `broken` failed: invalid configuration: boom",
        ),
        ("panic", "service `broken` panicked: kaboom"),
        ("end", "service `broken` ended while the app was running"),
    ] {
        let prefix = unique_prefix(&format!("svc-{how}"));
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            App::new(config(&prefix))
                .only(&[])
                .service(Broken(how))
                .run(),
        )
        .await
        .expect("run returns, not hangs");
        let err = result.expect_err(how).to_string();
        assert!(err.contains(needle), "{how}: {err}");
    }
}
