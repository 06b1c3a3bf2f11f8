//! `/metrics`, scraped over real HTTP, for handlers that settle other
//! than by their result: a failure after an early ack (`ack = "first"` and
//! `ctx.ack()`) is `failed_after_ack`, never a nak or a dead letter; and a
//! handler registered in code is counted like an attribute's.

use std::net::SocketAddr;
use std::time::Duration;

use jetwire::{App, Config, Context, HandlerError, HandlerOptions, queue};
use jetwire_tests::scrape::{metrics, sample, settled};
use jetwire_tests::{eventually, shared_server, unique_prefix};

/// Acknowledged before the call: a failure after it is counted, never
/// retried or dead-lettered.
#[queue("queue.obsfirst", ack = "first")]
async fn obs_first(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::transient("fails after the ack"))
}

/// Acknowledges by hand, then fails.
#[queue("queue.obsbyhand")]
async fn obs_by_hand(_n: u64, ctx: Context) -> Result<(), HandlerError> {
    ctx.ack().await?;
    Err(HandlerError::permanent("fails after ctx.ack()"))
}

/// No attribute: registered in code, under the name it is given.
async fn obs_code(n: u64) -> Result<(), HandlerError> {
    if n % 2 == 1 {
        return Err(HandlerError::permanent("odd"));
    }
    Ok(())
}

fn config(prefix: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("obsa")
        .subject_prefix(prefix)
        .http_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("valid")
}

#[tokio::test]
async fn metrics_count_acks_first_and_handlers_from_configuration() {
    let prefix = unique_prefix("obsa");
    let running = App::new(config(&prefix))
        .only(&["obs_first", "obs_by_hand"])
        .queue_with(
            "queue.obscode",
            obs_code,
            HandlerOptions::new().name("obs_code").max_deliver(2),
        )
        .start()
        .await
        .expect("starts");
    let addr = running.http_addr().expect("listening");
    let publisher = running.publisher();
    for subject in ["queue.obsfirst", "queue.obsbyhand"] {
        for i in 0..3u64 {
            publisher.publish(subject, &i).await.expect("publish");
        }
    }
    for i in 0..4u64 {
        publisher
            .publish("queue.obscode", &i)
            .await
            .expect("publish");
    }
    let text = eventually(Duration::from_secs(20), "every message settled", || async {
        let text = metrics(addr).await;
        let done = settled(&text, "obs_first", "failed_after_ack") == Some(3.0)
            && settled(&text, "obs_by_hand", "failed_after_ack") == Some(3.0)
            && settled(&text, "obs_code", "ack") == Some(2.0)
            && settled(&text, "obs_code", "dead_letter") == Some(2.0);
        done.then_some(text)
    })
    .await;
    for handler in ["obs_first", "obs_by_hand"] {
        for outcome in ["ack", "nak", "dead_letter"] {
            assert_eq!(
                settled(&text, handler, outcome).unwrap_or(0.0),
                0.0,
                "{handler} {outcome}"
            );
        }
        let received = sample(
            &text,
            "jetwire_messages_received_total",
            &[("handler", handler)],
        );
        assert_eq!(received, Some(3.0), "{handler}: each message once");
    }
    let received = sample(
        &text,
        "jetwire_messages_received_total",
        &[("handler", "obs_code")],
    );
    assert_eq!(received, Some(4.0));
    assert_eq!(
        sample(
            &text,
            "jetwire_dead_letters_total",
            &[("handler", "obs_code"), ("reason", "permanent")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "jetwire_handler_duration_seconds_count",
            &[("handler", "obs_code")],
        ),
        Some(4.0)
    );
    running.shutdown().await.expect("clean shutdown");
}
