//! A jetwire app in its own process, for tests that kill it.
//!
//! Reads `Config::from_env()` and `WORKER_MODE`; prints `READY` once
//! consuming and `LAST <id>` when a job reaches its last delivery.
//! Modes: `hang-last` (fail transiently, then hang on the last delivery),
//! `ok` (ack everything), `slow` (`jetwire::App::run` until SIGTERM, with a
//! handler that prints `START <id>`, works 1s, then prints `DONE <id>`),
//! `ledger` (records every `queue.killme` job in the Postgres ledger named
//! by `LEDGER_RUN` and `LEDGER_SCENARIO`), `checkpoint` (a job of six
//! steps that saves a checkpoint after each and resumes from the last),
//! `singleton` (prints when each call starts and ends), `partitioned`
//! (a handler in 16 partitions that prints each job it finished),
//! `ack-first` (an `ack = "first"` handler that prints `START <id>` and,
//! 20 ms later, `DONE <id>`; drains on SIGTERM), `last-run` (a
//! `max_deliver = 1` handler that prints `START <id>` and, 20 ms later,
//! `DONE <id>`).

use std::io::Write;

use jetwire::{App, Config, Context, HandlerError, State, queue, subscribe};

#[derive(Clone)]
struct Mode(String);

#[queue("queue.adv", max_deliver = 2, ack_wait = "1s", backoff = ["50ms"], concurrency = 64)]
async fn adv(id: u64, ctx: Context, mode: State<Mode>) -> Result<(), HandlerError> {
    hang_or_fail(id, &ctx, &mode.0.0).await
}

#[subscribe("advev.created", max_deliver = 2, ack_wait = "1s", backoff = ["50ms"], deliver = "all", concurrency = 64)]
async fn adv_event(id: u64, ctx: Context, mode: State<Mode>) -> Result<(), HandlerError> {
    hang_or_fail(id, &ctx, &mode.0.0).await
}

#[derive(serde::Deserialize)]
struct Job {
    id: u64,
}

#[queue("queue.killme", concurrency = 32, ack_wait = "2s", max_deliver = 50, backoff = ["100ms"])]
async fn kill_job(job: Job, ledger: State<jetwire_tests::Ledger>) -> Result<(), HandlerError> {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    ledger
        .record(job.id)
        .await
        .map_err(HandlerError::transient)?;
    Ok(())
}

#[queue("queue.slowterm", concurrency = 50)]
async fn slow_job(id: u64) {
    say(&format!("START {id}"));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    say(&format!("DONE {id}"));
}

/// Resumes from its checkpoint, then saves one per step of six, 200 ms
/// apart; job 99 then fails for good.
#[queue("queue.ckpt", ack_wait = "2s", max_deliver = 5)]
async fn ckpt_job(id: u64, ctx: Context) -> Result<(), HandlerError> {
    let start: u32 = ctx.last_checkpoint().await?.unwrap_or(0);
    say(&format!("RESUME {id} {start}"));
    for step in start..6 {
        ctx.checkpoint(&(step + 1)).await?;
        say(&format!("STEP {id} {}", step + 1));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if id == 99 {
        return Err(HandlerError::permanent("job 99 fails after its steps"));
    }
    say(&format!("DONE {id}"));
    Ok(())
}

/// Prints when each call starts and ends (µs since 1970), 30 ms apart (4 s
/// in 100 ms steps for ids from 1000). Up to four at once: what keeps
/// other replicas out is the pin, not one message in flight.
#[queue("queue.single", singleton = true, ack_wait = "2s", concurrency = 4)]
async fn single_job(id: u64) -> Result<(), HandlerError> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    };
    say(&format!("START {id} {}", now()));
    let steps = if id >= 1000 { 40 } else { 1 };
    let step = if id >= 1000 { 100 } else { 30 };
    for _ in 0..steps {
        tokio::time::sleep(std::time::Duration::from_millis(step)).await;
    }
    say(&format!("END {id} {}", now()));
    Ok(())
}

/// A job of one key, the `n`th of that key.
#[derive(serde::Deserialize)]
struct Keyed {
    key: String,
    n: u32,
}

/// Prints `DONE <key> <n> <µs since 1970> <subject> <attempt>` after 3 ms
/// of work. Every 50th job of a key (n = 7, 57, ..) fails its first run.
#[queue("queue.parts", partitions = 16, ack_wait = "2s", backoff = ["100ms"])]
async fn part_job(job: Keyed, ctx: Context) -> Result<(), HandlerError> {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    if job.n % 50 == 7 && ctx.attempt() == 1 {
        return Err(HandlerError::transient("fails its first run"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    say(&format!(
        "DONE {} {} {now} {} {}",
        job.key,
        job.n,
        ctx.subject(),
        ctx.attempt()
    ));
    Ok(())
}

/// At most once: acknowledged before it runs.
#[queue("queue.atmost", ack = "first", concurrency = 16, ack_wait = "2s")]
async fn once_job(id: u64) {
    say(&format!("START {id}"));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    say(&format!("DONE {id}"));
}

/// One run at most: each run is its last, marked begun before it starts.
#[queue("queue.lastrun", max_deliver = 1, concurrency = 16, ack_wait = "2s")]
async fn last_run_job(id: u64) {
    say(&format!("START {id}"));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    say(&format!("DONE {id}"));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn hang_or_fail(id: u64, ctx: &Context, mode: &str) -> Result<(), HandlerError> {
    if mode == "ok" {
        return Ok(());
    }
    if ctx.attempt() < ctx.max_deliver() {
        return Err(HandlerError::transient("not yet"));
    }
    say(&format!("LAST {} {id}", ctx.handler()));
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), jetwire::Error> {
    let mode = Mode(std::env::var("WORKER_MODE").unwrap_or_else(|_| "ok".into()));
    let config = Config::from_env()?;
    let single = match mode.0.as_str() {
        "checkpoint" => Some("ckpt_job"),
        "singleton" => Some("single_job"),
        "partitioned" => Some("part_job"),
        "last-run" => Some("last_run_job"),
        _ => None,
    };
    if let Some(handler) = single {
        let running = App::new(config).only(&[handler]).start().await?;
        say("READY");
        tokio::signal::ctrl_c().await.ok();
        return running.shutdown().await;
    }
    if mode.0 == "ack-first" {
        // Drains on SIGTERM, so that only a SIGKILL loses calls.
        let running = App::new(config).only(&["once_job"]).start().await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        say("READY");
        term.recv().await;
        return running.shutdown().await;
    }
    if mode.0 == "slow" {
        return App::new(config).only(&["slow_job"]).run().await;
    }
    if mode.0 == "ledger" {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let ledger =
            jetwire_tests::Ledger::connect(&var("LEDGER_RUN"), &var("LEDGER_SCENARIO")).await;
        let running = App::new(config)
            .only(&["kill_job"])
            .state(ledger)
            .start()
            .await?;
        say("READY");
        tokio::signal::ctrl_c().await.ok();
        return running.shutdown().await;
    }
    let running = App::new(config)
        .only(&["adv", "adv_event"])
        .state(mode)
        .start()
        .await?;
    say("READY");
    tokio::signal::ctrl_c().await.ok();
    running.shutdown().await
}
