//! An order service on jetwire.
//!
//! - `orders.created` events fan out to two apps: `billing` and `shipping`;
//! - billing asks for a receipt email on the `queue.email` work queue;
//! - the mailer fails now and then (a transient error: retried with backoff)
//!   and refuses addresses without `@` (a permanent error: dead-lettered).
//!
//! `orders serve --app billing|shipping|mailer` runs one app until Ctrl-C,
//! configured from the environment (`NATS_URL`, `JETWIRE_*`).
//! `orders demo` runs all three against `NATS_URL`, publishes traffic
//! (one payload is not even JSON), prints what happened, and exits.
//! With `JETWIRE_ASYNCAPI=<file>`, any command writes the AsyncAPI document
//! of all three handlers there and exits without connecting.
//! With `JETWIRE_HTTP_ADDR=127.0.0.1:9090`, `serve` answers `/healthz`,
//! `/readyz` and `/metrics`. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, every
//! handler's span goes there (OTLP over HTTP), in the publisher's trace.
//!
//! Logs go to stderr, one line per outcome (`RUST_LOG=debug` shows acks;
//! retries and dead letters are warnings), each with the handler, subject,
//! attempt and message id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Config, Context, HandlerError, RunningApp, State, queue, subscribe};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

mod traces;

/// An order was placed.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct OrderCreated {
    /// The order.
    pub order_id: u64,
    /// Where its receipt goes.
    pub email: String,
    /// What it costs.
    pub total_cents: u64,
}

/// A job: send one email.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SendEmail {
    /// The order it is about.
    pub order_id: u64,
    /// The address.
    pub to: String,
    /// The text.
    pub body: String,
}

/// A mail server that is down for the first try of every third order.
#[derive(Clone, Default)]
pub struct Mailer {
    failed_once: Arc<Mutex<HashSet<u64>>>,
}

impl Mailer {
    async fn send(&self, job: &SendEmail) -> Result<(), std::io::Error> {
        let first_try = self
            .failed_once
            .lock()
            .map(|mut s| s.insert(job.order_id))
            .unwrap_or(false);
        if job.order_id.is_multiple_of(3) && first_try {
            return Err(std::io::Error::other("mail server timed out"));
        }
        Ok(())
    }
}

/// Billing: charge the order, then ask for a receipt email.
#[subscribe("orders.created")]
async fn bill_order(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    tracing::info!(order = order.order_id, cents = order.total_cents, "billed");
    let receipt = SendEmail {
        order_id: order.order_id,
        to: order.email,
        body: format!("Thanks! We charged {} cents.", order.total_cents),
    };
    ctx.publish("queue.email", &receipt).await?;
    Ok(())
}

/// Shipping: its own copy of every order.
#[subscribe("orders.created")]
async fn ship_order(order: OrderCreated) {
    tracing::info!(order = order.order_id, "shipment scheduled");
}

/// The email work queue: each email sent once, retried when the server fails.
#[queue("queue.email", max_deliver = 4, backoff = ["200ms", "1s"])]
async fn send_email(job: SendEmail, mailer: State<Mailer>) -> Result<(), HandlerError> {
    if !job.to.contains('@') {
        return Err(HandlerError::permanent(format!(
            "no @ in address {:?}",
            job.to
        )));
    }
    mailer.send(&job).await?;
    tracing::info!(order = job.order_id, to = %job.to, bytes = job.body.len(), "email sent");
    Ok(())
}

fn app(config: &Config, name: &str, handler: &str) -> App {
    let mut config = config.clone();
    config.app = name.to_owned();
    App::new(config).only(&[handler]).state(Mailer::default())
}

const APPS: [(&str, &str); 3] = [
    ("billing", "bill_order"),
    ("shipping", "ship_order"),
    ("mailer", "send_email"),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG as `warn` or `warn,jetwire=debug`: per-target levels, no regex.
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false);
    let (traces, provider) = traces::layer()?.unzip();
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(traces)
        .init();
    let result = run().await;
    if let Some(provider) = provider {
        // Sends what the batch still holds.
        provider.shutdown()?;
    }
    result
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::from_env()?;
    if config.asyncapi.is_some() {
        // Every handler of the example, described; nothing connects.
        return Ok(App::new(config)
            .version(env!("CARGO_PKG_VERSION"))
            .run()
            .await?);
    }
    match args.first().map(String::as_str) {
        Some("demo") => demo(config).await,
        Some("serve") | None => {
            let name = args
                .iter()
                .skip_while(|a| *a != "--app")
                .nth(1)
                .map_or("billing", |s| s.as_str());
            let Some((_, handler)) = APPS.iter().find(|(app, _)| *app == name) else {
                return Err(
                    format!("unknown app {name:?}: use billing, shipping or mailer").into(),
                );
            };
            Ok(app(&config, name, handler).run().await?)
        }
        Some(other) => {
            Err(format!("unknown command {other:?}: use `serve --app NAME` or `demo`").into())
        }
    }
}

#[allow(clippy::print_stdout)]
async fn demo(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = config.subject_prefix.clone().unwrap_or_default();
    println!(
        "jetwire demo against {} (prefix {prefix:?})\n",
        config.redacted_url()
    );
    let mut running: Vec<(&str, RunningApp)> = Vec::new();
    for (name, handler) in APPS {
        running.push((name, app(&config, name, handler).start().await?));
        println!("started app {name:<9} handler {handler}");
    }
    let publisher = running[0].1.publisher();
    let orders = [
        (1, "ada@example.com"),
        (2, "grace@example.com"),
        (3, "linus@example.com"),
        (4, "no-at-sign.example.com"),
        (5, "barbara@example.com"),
        (6, "ken@example.com"),
    ];
    for (id, email) in orders {
        let order = OrderCreated {
            order_id: id,
            email: email.into(),
            total_cents: 1000 + id * 250,
        };
        publisher.publish("orders.created", &order).await?;
    }
    publisher
        .publish_raw(
            "orders.created",
            &b"{\"order_id\": 7, \"email\""[..],
            Default::default(),
        )
        .await?;
    println!(
        "\npublished 6 orders (order 4 has no @ in its address) and 1 payload that is not JSON"
    );

    // Every order reaches billing and shipping (the poison one dead-lettered
    // by both); five emails are sent, one is dead-lettered.
    let settled = |apps: &[(&str, RunningApp)]| {
        let s: Vec<_> = apps.iter().flat_map(|(_, a)| a.stats()).collect();
        let by = |h: &str| s.iter().find(|x| x.handler == h).cloned();
        let (Some(b), Some(sh), Some(m)) = (by("bill_order"), by("ship_order"), by("send_email"))
        else {
            return false;
        };
        b.acked == 6
            && b.dead_lettered == 1
            && sh.acked == 6
            && sh.dead_lettered == 1
            && m.acked == 5
            && m.dead_lettered == 1
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !settled(&running) {
        if tokio::time::Instant::now() > deadline {
            return Err("the demo did not settle in 30s; run with RUST_LOG=info to see why".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!(
        "\n{:<9} {:<11} {:<15} {:>8} {:>6} {:>8} {:>13}",
        "app", "handler", "subject", "received", "acked", "retried", "dead-lettered"
    );
    for (name, app) in &running {
        for s in app.stats() {
            println!(
                "{name:<9} {:<11} {:<15} {:>8} {:>6} {:>8} {:>13}",
                s.handler, s.subject, s.received, s.acked, s.retried, s.dead_lettered
            );
        }
    }

    println!(
        "\ndead letters (stream {}):",
        jetwire::topology::dlq_stream(config.subject_prefix.as_deref())
    );
    let dlq = jetwire::dlq::DeadLetters::on(publisher.clone());
    for letter in dlq.list(&jetwire::dlq::Filter::new()).await? {
        println!(
            "  #{:<3} {:<22} reason={:<9} handler={:<10} attempts={} error={}",
            letter.sequence(),
            letter.subject(),
            letter.reason().map_or("-", |r| r.as_str()),
            letter.handler().unwrap_or("-"),
            letter.attempts().unwrap_or(0),
            letter.error().unwrap_or(""),
        );
    }
    println!(
        "  (the same with the CLI: `jetwire dlq ls`, `jetwire dlq show <seq>`, `jetwire dlq replay --all --reason decode`)"
    );
    for (_, app) in running {
        app.shutdown().await?;
    }
    println!("\nall apps drained and stopped");
    Ok(())
}

/// The example's handlers in memory: an order is billed and shipped, its
/// receipt sent once through a mail server that fails the first try, and
/// an address without `@` is dead-lettered at once.
#[cfg(test)]
mod tests {
    use jetwire::DlqReason;
    use jetwire::testing::TestApp;

    use super::*;

    fn order(order_id: u64, email: &str) -> OrderCreated {
        OrderCreated {
            order_id,
            email: email.into(),
            total_cents: 1299,
        }
    }

    #[tokio::test]
    async fn an_order_is_billed_shipped_and_its_receipt_sent_after_one_retry() {
        let app = TestApp::new().state(Mailer::default());
        let report = app.publish("orders.created", &order(3, "a@b.c")).await;
        assert!(report.run("bill_order").is_some_and(|r| r.acked()));
        assert!(report.run("ship_order").is_some_and(|r| r.acked()));
        let email = &report.follow_ups()[0];
        let sent = email.run("send_email").expect("the receipt job");
        assert!(sent.acked());
        assert_eq!(sent.attempts(), 2, "order 3: the mail server failed once");
    }

    #[tokio::test]
    async fn an_address_without_at_is_dead_lettered_at_once() {
        let app = TestApp::new().state(Mailer::default());
        let report = app.publish("orders.created", &order(4, "nobody")).await;
        let email = report.follow_ups()[0]
            .run("send_email")
            .expect("the receipt job");
        assert_eq!(email.dlq_reason(), Some(DlqReason::Permanent));
        assert_eq!(email.attempts(), 1);
        assert_eq!(app.dead_letters().len(), 1);
    }
}
