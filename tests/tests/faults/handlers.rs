//! The handlers the scenarios run, and the state they record into.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{Context, HandlerError, PublishError, ResultExt, State, queue, subscribe};
use jetwire_tests::Ledger;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: u64,
}

/// How long each call takes.
#[derive(Clone, Copy)]
pub(crate) struct Delay {
    pub(crate) per_call: Duration,
}

#[queue("queue.fault", concurrency = 32, ack_wait = "2s", max_deliver = 50, backoff = ["100ms", "500ms"])]
pub(crate) async fn fault_job(
    job: Job,
    ledger: State<Ledger>,
    delay: State<Delay>,
) -> Result<(), HandlerError> {
    record_after(job, &ledger, *delay).await
}

/// The same work on an event stream, whose durable starts at new messages.
#[subscribe("fevents.data", concurrency = 32, ack_wait = "2s", max_deliver = 50, backoff = ["100ms", "500ms"])]
pub(crate) async fn fault_event(
    job: Job,
    ledger: State<Ledger>,
    delay: State<Delay>,
) -> Result<(), HandlerError> {
    record_after(job, &ledger, *delay).await
}

pub(crate) async fn record_after(
    job: Job,
    ledger: &Ledger,
    delay: Delay,
) -> Result<(), HandlerError> {
    if !delay.per_call.is_zero() {
        tokio::time::sleep(delay.per_call).await;
    }
    ledger.record(job.id).await.transient()?;
    Ok(())
}

/// Allowed one run: a message handed back unrun (leader changes, a paused
/// node, an app restart) must still get it.
#[queue("queue.fault-once", concurrency = 4, max_deliver = 1)]
pub(crate) async fn fault_once(
    job: Job,
    ledger: State<Ledger>,
    delay: State<Delay>,
) -> Result<(), HandlerError> {
    record_after(job, &ledger, *delay).await
}

/// Slower than its ack_wait: only progress keeps it from being redelivered.
#[queue("queue.fault-slow", ack_wait = "1s", concurrency = 64, max_deliver = 5)]
pub(crate) async fn fault_slow(job: Job, ledger: State<Ledger>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ledger.record(job.id).await.transient()?;
    Ok(())
}

/// A typed payload, for the poison corpus.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Typed {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
}

#[queue("queue.fault-poison", max_deliver = 3, backoff = ["100ms"])]
pub(crate) async fn fault_typed(job: Typed, ledger: State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(job.id).await.transient()?;
    Ok(())
}

/// Subjects no publish may reach.
pub(crate) fn hostile_subjects() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        ".",
        "..",
        "a..b",
        ".a",
        "a.",
        "a.*",
        "a.>",
        "*",
        ">",
        "a b",
        " a",
        "a\tb",
        "a\r\nb",
        "a\nb",
        "a\r",
        "$JS.API.STREAM.LIST",
        "$SYS.REQ",
        "a.$b",
        "é",
        "a/b",
        "a.b\u{0}",
        "queue.*.x",
        "a.>.b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("a.{}", "x".repeat(300)));
    v.push(vec!["t"; 17].join("."));
    v
}

/// What a handler saw when it tried each hostile subject.
#[derive(Clone, Default)]
pub(crate) struct HostileResults(pub(crate) Arc<Mutex<Vec<(String, bool)>>>);

#[queue("queue.fault-hostile")]
pub(crate) async fn fault_hostile(_n: u64, ctx: Context, seen: State<HostileResults>) {
    for s in hostile_subjects() {
        let refused = matches!(
            ctx.publish(&s, &1u64).await,
            Err(PublishError::InvalidSubject(_))
        );
        seen.0.0.lock().expect("not poisoned").push((s, refused));
    }
}

/// Handlers that must only ever see their own subject.
#[derive(Clone)]
pub(crate) struct Crosstalk {
    pub(crate) ledger: Ledger,
    pub(crate) wrong: Arc<Mutex<Vec<String>>>,
}

impl Crosstalk {
    async fn check(&self, own: &str, got: &str, id: u64) {
        if own != got {
            self.wrong
                .lock()
                .expect("not poisoned")
                .push(format!("{own} got {got}"));
        }
        // One ledger id space per subject: subject index * 1e6 + id.
        let index: u64 = own
            .rsplit('s')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(99);
        let kind = if own.starts_with("queue") { 0 } else { 50 };
        let _ = self.ledger.record((index + kind) * 1_000_000 + id).await;
    }
}

#[queue("queue.many.s0", concurrency = 8)]
pub(crate) async fn many_q0(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s0", ctx.subject(), job.id).await;
}
#[subscribe("many.s0", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e0(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s0", ctx.subject(), job.id).await;
}
#[queue("queue.many.s1", concurrency = 8)]
pub(crate) async fn many_q1(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s1", ctx.subject(), job.id).await;
}
#[subscribe("many.s1", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e1(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s1", ctx.subject(), job.id).await;
}
#[queue("queue.many.s2", concurrency = 8)]
pub(crate) async fn many_q2(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s2", ctx.subject(), job.id).await;
}
#[subscribe("many.s2", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e2(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s2", ctx.subject(), job.id).await;
}
#[queue("queue.many.s3", concurrency = 8)]
pub(crate) async fn many_q3(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s3", ctx.subject(), job.id).await;
}
#[subscribe("many.s3", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e3(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s3", ctx.subject(), job.id).await;
}
#[queue("queue.many.s4", concurrency = 8)]
pub(crate) async fn many_q4(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s4", ctx.subject(), job.id).await;
}
#[subscribe("many.s4", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e4(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s4", ctx.subject(), job.id).await;
}
#[queue("queue.many.s5", concurrency = 8)]
pub(crate) async fn many_q5(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s5", ctx.subject(), job.id).await;
}
#[subscribe("many.s5", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e5(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s5", ctx.subject(), job.id).await;
}
#[queue("queue.many.s6", concurrency = 8)]
pub(crate) async fn many_q6(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s6", ctx.subject(), job.id).await;
}
#[subscribe("many.s6", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e6(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s6", ctx.subject(), job.id).await;
}
#[queue("queue.many.s7", concurrency = 8)]
pub(crate) async fn many_q7(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s7", ctx.subject(), job.id).await;
}
#[subscribe("many.s7", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e7(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s7", ctx.subject(), job.id).await;
}
#[queue("queue.many.s8", concurrency = 8)]
pub(crate) async fn many_q8(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s8", ctx.subject(), job.id).await;
}
#[subscribe("many.s8", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e8(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s8", ctx.subject(), job.id).await;
}
#[queue("queue.many.s9", concurrency = 8)]
pub(crate) async fn many_q9(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s9", ctx.subject(), job.id).await;
}
#[subscribe("many.s9", deliver = "all", concurrency = 8)]
pub(crate) async fn many_e9(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s9", ctx.subject(), job.id).await;
}

pub(crate) const MANY: [&str; 20] = [
    "many_q0", "many_e0", "many_q1", "many_e1", "many_q2", "many_e2", "many_q3", "many_e3",
    "many_q4", "many_e4", "many_q5", "many_e5", "many_q6", "many_e6", "many_q7", "many_e7",
    "many_q8", "many_e8", "many_q9", "many_e9",
];

pub(crate) fn full() -> bool {
    std::env::var("FULL").is_ok_and(|v| v == "1")
}

/// Saves one checkpoint per job, then succeeds: what the acks must clean up.
#[queue("queue.ckchurn", concurrency = 64)]
pub(crate) async fn checkpoint_churn(n: u64, ctx: Context) -> Result<(), HandlerError> {
    ctx.checkpoint(&n).await?;
    Ok(())
}
