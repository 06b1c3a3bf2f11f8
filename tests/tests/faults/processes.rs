//! Faults of the consuming process: killed, killed on a last delivery,
//! stopped with calls in flight.

use std::time::{Duration, Instant};

use jetwire::Publisher;
use jetwire_tests::{
    Ledger, Server, WorkerProcess, config, header, postgres_url, stream_messages, unique_prefix,
};

use crate::figures::{
    Figures, check, dlq_figures, line, publish_numbered, recovery, run_id, settled, wait_for,
};
use crate::handlers::full;

pub(crate) const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");

/// Scenario 1: the consumer process SIGKILLed and restarted 5 times.
pub(crate) async fn consumer_killed() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("killed");
    let run = run_id();
    let ledger = Ledger::connect(&run, "consumer-killed").await;
    let n = if full() { 20_000 } else { 6_000 };
    // The worker writes to the same ledger, started by this process.
    let ledger_url = tokio::task::spawn_blocking(postgres_url)
        .await
        .expect("the ledger's PostgreSQL");
    let env = [
        ("LEDGER_RUN", run.as_str()),
        ("LEDGER_SCENARIO", "consumer-killed"),
        ("JETWIRE_LEDGER_URL", ledger_url.as_str()),
    ];
    let url = server.url();
    let spawn = || WorkerProcess::ready(WORKER, &url, &prefix, "ledger", &env);
    let mut worker = Some(tokio::task::block_in_place(spawn));
    let publisher = Publisher::connect(&config(&server, &prefix, "test"))
        .await
        .map_err(|e| e.to_string())?;
    let pubs = {
        let publisher = publisher.clone();
        tokio::spawn(
            async move { publish_numbered(&publisher, "queue.killme", "killed", 0..n).await },
        )
    };
    let mut recovery_s: f64 = 0.0;
    for k in 0..5u64 {
        wait_for(&ledger, n * (k + 1) / 6, Duration::from_secs(120)).await?;
        if let Some(w) = worker.take() {
            w.kill9();
        }
        worker = Some(tokio::task::block_in_place(spawn));
        let back = ledger.tally().await.0;
        recovery_s = recovery_s.max(recovery(&ledger, back, Duration::from_secs(60)).await);
    }
    pubs.await.map_err(|e| e.to_string())?;
    let f = settled(
        &ledger,
        publisher.client(),
        &prefix,
        n,
        Duration::from_secs(180),
        recovery_s,
    )
    .await;
    drop(worker);
    check("consumer-killed", &f, 0)
}

/// What else a last-delivery scenario does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Also {
    Nothing,
    /// No replica runs for 3 s while the deliveries time out.
    Wait,
    /// An operator deletes the dead-letter stream, the advisory capture
    /// and the bucket of delivery records before the messages come.
    DeletePath,
}

/// Scenario 5: a process SIGKILLed during the last delivery of failing
/// messages.
pub(crate) async fn last_delivery_killed(
    name: &'static str,
    subject: &str,
    handler: &str,
    also: Also,
) -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix(name);
    let url = server.url();
    let worker = tokio::task::block_in_place(|| {
        WorkerProcess::ready(WORKER, &url, &prefix, "hang-last", &[])
    });
    let publisher = Publisher::connect(&config(&server, &prefix, "test"))
        .await
        .map_err(|e| e.to_string())?;
    if also == Also::DeletePath {
        delete_dead_letter_path(publisher.client(), &prefix).await?;
    }
    let n = if full() { 50 } else { 10 };
    for id in 0..n {
        publisher
            .publish(subject, &id)
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio::task::block_in_place(|| {
        for _ in 0..n {
            worker.expect_line(|l| l.starts_with("LAST"));
        }
    });
    worker.kill9();
    let t0 = Instant::now();
    if also == Also::Wait {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let _replica =
        tokio::task::block_in_place(|| WorkerProcess::ready(WORKER, &url, &prefix, "ok", &[]));
    let client = publisher.client().clone();
    let adv = format!("{}_JETWIRE_ADVISORIES", prefix.to_uppercase());
    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let letters = stream_messages(&client, &jetwire_tests::dlq_stream(&prefix)).await;
        let pending = stream_messages(&client, &adv).await;
        if letters.len() as u64 >= n && pending.is_empty() {
            break letters;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {n} dead letters after 60s, {} advisories pending",
                letters.len(),
                pending.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recovery_s = t0.elapsed().as_secs_f64();
    for m in &letters {
        if header(m, "Jetwire-Dlq-Reason") != Some("exhausted")
            || header(m, "Jetwire-Dlq-Handler") != Some(handler)
        {
            return Err(format!(
                "dead letter with reason {:?}, handler {:?}",
                header(m, "Jetwire-Dlq-Reason"),
                header(m, "Jetwire-Dlq-Handler")
            ));
        }
    }
    let mut ids: Vec<u64> = letters
        .iter()
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect();
    ids.sort_unstable();
    if ids != (0..n).collect::<Vec<_>>() {
        return Err(format!(
            "the DLQ holds ids {ids:?}, not each of 0..{n} once"
        ));
    }
    if subject.starts_with("queue.") {
        let queue = jetwire::topology::queue_stream(Some(&prefix));
        let left = stream_messages(&client, &queue).await.len();
        if left != 0 {
            return Err(format!("{left} originals left in the work queue"));
        }
    }
    let (dlq, dlq_duplicates) = dlq_figures(&client, &prefix).await;
    let f = Figures {
        published: n,
        handled_unique: 0,
        duplicates: 0,
        dlq,
        dlq_duplicates,
        recovery_s,
    };
    check(name, &f, n)
}

/// Deletes, as an operator might, every stream on the dead-letter path.
async fn delete_dead_letter_path(client: &async_nats::Client, prefix: &str) -> Result<(), String> {
    let js = async_nats::jetstream::new(client.clone());
    let named = |what: &str| jetwire::topology::default_stream(Some(prefix), what);
    for stream in [
        jetwire::topology::dlq_stream(Some(prefix)),
        named("jetwire_advisories"),
        format!("KV_{}", named("jetwire_runs")),
    ] {
        js.delete_stream(&stream)
            .await
            .map_err(|e| format!("deleting {stream}: {e}"))?;
    }
    Ok(())
}

/// Scenario 6: SIGTERM with 50 calls in flight: all finish, exit 0, and
/// nothing is redelivered after a restart.
pub(crate) async fn sigterm_in_flight() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("sigterm");
    let url = server.url();
    let worker = WorkerProcess::spawn(WORKER, &url, &prefix, "slow", &[]);
    let publisher = Publisher::connect(&config(&server, &prefix, "test"))
        .await
        .map_err(|e| e.to_string())?;
    // `run()` prints nothing when ready: publish once its stream exists.
    let deadline = Instant::now() + Duration::from_secs(20);
    while publisher.publish("queue.slowterm", &0u64).await.is_err() {
        if Instant::now() > deadline {
            return Err("the worker never created its stream".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in 1..50u64 {
        publisher
            .publish("queue.slowterm", &id)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (status, rest, drain_s) = tokio::task::block_in_place(|| {
        for _ in 0..50 {
            worker.expect_line(|l| l.starts_with("START"));
        }
        let t0 = Instant::now();
        let (status, rest) = worker.terminate();
        (status, rest, t0.elapsed().as_secs_f64())
    });
    if !status.success() {
        return Err(format!("exit status {status:?} after SIGTERM"));
    }
    let done = rest.iter().filter(|l| l.starts_with("DONE")).count() as u64;
    server_state_after_exit(publisher.client(), &prefix).await?;
    let again = WorkerProcess::spawn(WORKER, &url, &prefix, "slow", &[]);
    publisher
        .publish("queue.slowterm", &1000u64)
        .await
        .map_err(|e| e.to_string())?;
    let seen: Vec<String> = tokio::task::block_in_place(|| {
        let mut seen = Vec::new();
        loop {
            let l = again.expect_line(|l| l.starts_with("START"));
            seen.push(l.clone());
            if l == "START 1000" {
                return seen;
            }
        }
    });
    drop(again);
    let redelivered = seen.len() as u64 - 1;
    let f = Figures {
        published: 50,
        handled_unique: done,
        duplicates: redelivered,
        dlq: 0,
        dlq_duplicates: 0,
        recovery_s: drain_s,
    };
    if redelivered != 0 {
        return Err(format!(
            "{}: {redelivered} messages came back after a clean exit",
            line("sigterm-in-flight", &f)
        ));
    }
    check("sigterm-in-flight", &f, 0)
}

/// What the server holds once the worker exited: its flush at exit means
/// the server has read every ack, so nothing may be pending, waiting for
/// an ack, or left in the work-queue stream. (A redelivery check alone
/// would stop before `ack_wait` and miss an ack that was never sent.)
async fn server_state_after_exit(client: &async_nats::Client, prefix: &str) -> Result<(), String> {
    let js = async_nats::jetstream::new(client.clone());
    let stream_name = jetwire::topology::queue_stream(Some(prefix));
    let durable = jetwire::topology::durable_for(
        Some(prefix),
        "",
        jetwire::registry::Kind::Queue,
        "",
        "queue.slowterm",
        None,
    );
    let mut stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .consumer_info(&durable)
        .await
        .map_err(|e| e.to_string())?;
    let left = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages;
    if consumer.num_ack_pending != 0 || consumer.num_pending != 0 || left != 0 {
        return Err(format!(
            "after a clean exit the server holds ack_pending={} pending={} messages={left}",
            consumer.num_ack_pending, consumer.num_pending
        ));
    }
    Ok(())
}
