//! A jetwire app in its own process, for tests that kill it.
//!
//! Reads `Config::from_env()` and `WORKER_MODE`; prints `READY` once
//! consuming and `LAST <id>` when a job reaches its last delivery.
//! Modes: `hang-last` (fail transiently, then hang on the last delivery),
//! `ok` (ack everything).

use std::io::Write;

use jetwire::{App, Config, Context, HandlerError, State, queue, subscribe};

#[derive(Clone)]
struct Mode(String);

#[queue("queue.adv", max_deliver = 2, ack_wait = "1s", backoff = ["50ms"])]
async fn adv(id: u64, ctx: Context, mode: State<Mode>) -> Result<(), HandlerError> {
    hang_or_fail(id, &ctx, &mode.0.0).await
}

#[subscribe("advev.created", max_deliver = 2, ack_wait = "1s", backoff = ["50ms"], deliver = "all")]
async fn adv_event(id: u64, ctx: Context, mode: State<Mode>) -> Result<(), HandlerError> {
    hang_or_fail(id, &ctx, &mode.0.0).await
}

async fn hang_or_fail(id: u64, ctx: &Context, mode: &str) -> Result<(), HandlerError> {
    if mode == "ok" {
        return Ok(());
    }
    if ctx.attempt() < ctx.max_deliver() {
        return Err(HandlerError::transient("not yet"));
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LAST {} {id}", ctx.handler());
        let _ = out.flush();
    }
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), jetwire::Error> {
    let mode = Mode(std::env::var("WORKER_MODE").unwrap_or_else(|_| "ok".into()));
    let running = App::new(Config::from_env()?).state(mode).start().await?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "READY");
        let _ = out.flush();
    }
    tokio::signal::ctrl_c().await.ok();
    running.shutdown().await
}
