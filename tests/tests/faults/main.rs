//! The fault suite: faults and bad input, with real nats-server processes
//! on loopback and a ledger in Postgres that survives process death. Each
//! scenario publishes uniquely numbered messages with `Nats-Msg-Id` and
//! ends with one line:
//!
//! `fault <name>: published=N handled_unique=N lost=0 duplicates=D dlq=K recovery_s=X`
//!
//! Runs with `cargo test -p jetwire-tests --test faults` (its own harness,
//! so the lines always show); `FULL=1` runs longer; naming scenarios runs
//! only those.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use crate::cluster::{cluster_handbacks, cluster_leader_loss};
use crate::inputs::{hostile_subjects_refused, many_handlers, poison_corpus, slow_handler};
use crate::kept::checkpoint_churn;
use crate::outbox::{outbox_leader_down, outbox_outage, outbox_stepdowns};
use crate::processes::{Also, consumer_killed, last_delivery_killed, sigterm_in_flight};
use crate::server::{EVENTS, QUEUE, durable_deleted, server_freeze, server_kill9, server_restart};

mod cluster;
mod figures;
mod handlers;
mod inputs;
mod kept;
mod outbox;
mod processes;
mod server;

/// Runs a scenario whose future is not `Send` (the test database's
/// generic statements) on a blocking thread of the same runtime.
async fn on_blocking<F>(scenario: fn() -> F) -> Result<String, String>
where
    F: Future<Output = Result<String, String>> + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(scenario()))
        .await
        .map_err(|e| format!("panicked: {e}"))?
}

type Scenario = fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

#[allow(clippy::print_stdout)]
fn main() {
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("consumer-killed", || Box::pin(consumer_killed())),
        ("server-restart", || Box::pin(server_restart())),
        ("server-kill9", || Box::pin(server_kill9(false))),
        ("server-kill9-sync-always", || Box::pin(server_kill9(true))),
        ("server-freeze", || Box::pin(server_freeze())),
        ("slow-handler", || Box::pin(slow_handler())),
        ("last-delivery-killed", || {
            Box::pin(last_delivery_killed(
                "last-delivery-killed",
                "queue.adv",
                "adv",
                Also::Nothing,
            ))
        }),
        ("last-delivery-killed-no-replica", || {
            Box::pin(last_delivery_killed(
                "last-delivery-killed-no-replica",
                "advev.created",
                "adv_event",
                Also::Wait,
            ))
        }),
        ("last-delivery-killed-path-deleted", || {
            Box::pin(last_delivery_killed(
                "last-delivery-killed-path-deleted",
                "queue.adv",
                "adv",
                Also::DeletePath,
            ))
        }),
        ("sigterm-in-flight", || Box::pin(sigterm_in_flight())),
        ("durable-deleted", || {
            Box::pin(durable_deleted("durable-deleted", QUEUE))
        }),
        ("event-durable-deleted", || {
            Box::pin(durable_deleted("event-durable-deleted", EVENTS))
        }),
        ("cluster-leader-loss", || Box::pin(cluster_leader_loss())),
        ("cluster-handbacks", || Box::pin(cluster_handbacks())),
        ("outbox-stepdowns", || {
            Box::pin(on_blocking(outbox_stepdowns))
        }),
        ("outbox-leader-down", || {
            Box::pin(on_blocking(outbox_leader_down))
        }),
        ("outbox-outage", || Box::pin(on_blocking(outbox_outage))),
        ("checkpoint-churn", || Box::pin(checkpoint_churn())),
        ("poison-corpus", || Box::pin(poison_corpus())),
        ("hostile-subjects", || Box::pin(hostile_subjects_refused())),
        ("many-handlers", || Box::pin(many_handlers())),
    ];
    // libtest-style flags (e.g. --nocapture) are accepted and ignored.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in scenarios {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let t0 = Instant::now();
        let result = rt.block_on(async { tokio::spawn(scenario()).await });
        match result {
            Ok(Ok(line)) => {
                passed += 1;
                println!("{line}");
                println!("  took {:.1}s", t0.elapsed().as_secs_f64());
            }
            Ok(Err(why)) => {
                failed += 1;
                println!("fault {name}: FAILED: {why}");
            }
            Err(panic) => {
                failed += 1;
                println!("fault {name}: FAILED: panicked: {panic}");
            }
        }
    }
    println!("faults: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
