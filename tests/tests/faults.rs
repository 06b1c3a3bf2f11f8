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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jetwire::{
    App, Context, HandlerError, PublishError, PublishOptions, Publisher, ResultExt, State, queue,
    subscribe,
};
use jetwire_tests::{
    Ledger, Server, WorkerProcess, config, header, stream_messages, unique_prefix,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
}

/// How long each call takes.
#[derive(Clone, Copy)]
struct Delay {
    per_call: Duration,
}

#[queue("queue.fault", concurrency = 32, ack_wait = "2s", max_deliver = 50, backoff = ["100ms", "500ms"])]
async fn fault_job(
    job: Job,
    ledger: State<Ledger>,
    delay: State<Delay>,
) -> Result<(), HandlerError> {
    record_after(job, &ledger, *delay).await
}

/// The same work on an event stream, whose durable starts at new messages.
#[subscribe("fevents.data", concurrency = 32, ack_wait = "2s", max_deliver = 50, backoff = ["100ms", "500ms"])]
async fn fault_event(
    job: Job,
    ledger: State<Ledger>,
    delay: State<Delay>,
) -> Result<(), HandlerError> {
    record_after(job, &ledger, *delay).await
}

async fn record_after(job: Job, ledger: &Ledger, delay: Delay) -> Result<(), HandlerError> {
    if !delay.per_call.is_zero() {
        tokio::time::sleep(delay.per_call).await;
    }
    ledger.record(job.id).await.transient()?;
    Ok(())
}

/// Slower than its ack_wait: only progress keeps it from being redelivered.
#[queue("queue.fault-slow", ack_wait = "1s", concurrency = 64, max_deliver = 5)]
async fn fault_slow(job: Job, ledger: State<Ledger>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ledger.record(job.id).await.transient()?;
    Ok(())
}

/// A typed payload, for the poison corpus.
#[derive(Debug, Serialize, Deserialize)]
struct Typed {
    id: u64,
    name: String,
    tags: Vec<String>,
}

#[queue("queue.fault-poison", max_deliver = 3, backoff = ["100ms"])]
async fn fault_typed(job: Typed, ledger: State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(job.id).await.transient()?;
    Ok(())
}

/// Subjects no publish may reach.
fn hostile_subjects() -> Vec<String> {
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
struct HostileResults(Arc<Mutex<Vec<(String, bool)>>>);

#[queue("queue.fault-hostile")]
async fn fault_hostile(_n: u64, ctx: Context, seen: State<HostileResults>) {
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
struct Crosstalk {
    ledger: Ledger,
    wrong: Arc<Mutex<Vec<String>>>,
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
async fn many_q0(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s0", ctx.subject(), job.id).await;
}
#[subscribe("many.s0", deliver = "all", concurrency = 8)]
async fn many_e0(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s0", ctx.subject(), job.id).await;
}
#[queue("queue.many.s1", concurrency = 8)]
async fn many_q1(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s1", ctx.subject(), job.id).await;
}
#[subscribe("many.s1", deliver = "all", concurrency = 8)]
async fn many_e1(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s1", ctx.subject(), job.id).await;
}
#[queue("queue.many.s2", concurrency = 8)]
async fn many_q2(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s2", ctx.subject(), job.id).await;
}
#[subscribe("many.s2", deliver = "all", concurrency = 8)]
async fn many_e2(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s2", ctx.subject(), job.id).await;
}
#[queue("queue.many.s3", concurrency = 8)]
async fn many_q3(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s3", ctx.subject(), job.id).await;
}
#[subscribe("many.s3", deliver = "all", concurrency = 8)]
async fn many_e3(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s3", ctx.subject(), job.id).await;
}
#[queue("queue.many.s4", concurrency = 8)]
async fn many_q4(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s4", ctx.subject(), job.id).await;
}
#[subscribe("many.s4", deliver = "all", concurrency = 8)]
async fn many_e4(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s4", ctx.subject(), job.id).await;
}
#[queue("queue.many.s5", concurrency = 8)]
async fn many_q5(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s5", ctx.subject(), job.id).await;
}
#[subscribe("many.s5", deliver = "all", concurrency = 8)]
async fn many_e5(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s5", ctx.subject(), job.id).await;
}
#[queue("queue.many.s6", concurrency = 8)]
async fn many_q6(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s6", ctx.subject(), job.id).await;
}
#[subscribe("many.s6", deliver = "all", concurrency = 8)]
async fn many_e6(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s6", ctx.subject(), job.id).await;
}
#[queue("queue.many.s7", concurrency = 8)]
async fn many_q7(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s7", ctx.subject(), job.id).await;
}
#[subscribe("many.s7", deliver = "all", concurrency = 8)]
async fn many_e7(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s7", ctx.subject(), job.id).await;
}
#[queue("queue.many.s8", concurrency = 8)]
async fn many_q8(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s8", ctx.subject(), job.id).await;
}
#[subscribe("many.s8", deliver = "all", concurrency = 8)]
async fn many_e8(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s8", ctx.subject(), job.id).await;
}
#[queue("queue.many.s9", concurrency = 8)]
async fn many_q9(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("queue.many.s9", ctx.subject(), job.id).await;
}
#[subscribe("many.s9", deliver = "all", concurrency = 8)]
async fn many_e9(job: Job, ctx: Context, seen: State<Crosstalk>) {
    seen.check("many.s9", ctx.subject(), job.id).await;
}

const MANY: [&str; 20] = [
    "many_q0", "many_e0", "many_q1", "many_e1", "many_q2", "many_e2", "many_q3", "many_e3",
    "many_q4", "many_e4", "many_q5", "many_e5", "many_q6", "many_e6", "many_q7", "many_e7",
    "many_q8", "many_e8", "many_q9", "many_e9",
];

fn full() -> bool {
    std::env::var("FULL").is_ok_and(|v| v == "1")
}

/// One scenario's figures.
struct Figures {
    published: u64,
    handled_unique: u64,
    duplicates: u64,
    dlq: u64,
    dlq_duplicates: u64,
    recovery_s: f64,
}

impl Figures {
    /// Messages neither handled nor dead-lettered.
    fn lost(&self) -> u64 {
        self.published
            .saturating_sub(self.handled_unique + (self.dlq - self.dlq_duplicates))
    }
}

/// Publishes ids in order, each retried with its message id until stored;
/// returns the longest wait, in seconds, for one message to be stored.
async fn publish_numbered(
    publisher: &Publisher,
    subject: &str,
    scenario: &str,
    ids: std::ops::Range<u64>,
) -> f64 {
    let mut longest: f64 = 0.0;
    for id in ids {
        let opts = || PublishOptions::new().message_id(format!("{scenario}-{id}"));
        let t0 = Instant::now();
        // The server may be down or frozen: retry with the same id until stored.
        while publisher
            .publish_with(subject, &Job { id }, opts())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        longest = longest.max(t0.elapsed().as_secs_f64());
    }
    longest
}

async fn wait_for(ledger: &Ledger, n: u64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let (unique, _) = ledger.tally().await;
        if unique >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {unique} of {n} handled after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds until the ledger grows past `before`, measured from now.
async fn recovery(ledger: &Ledger, before: u64, timeout: Duration) -> f64 {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if ledger.tally().await.0 > before {
            return t0.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    timeout.as_secs_f64()
}

/// The longest time, in seconds, in which the ledger did not grow, from
/// now until it holds `target` messages.
async fn longest_stall(ledger: &Ledger, target: u64, timeout: Duration) -> Result<f64, String> {
    let t0 = Instant::now();
    let (mut last, mut last_change, mut longest) = (ledger.tally().await.0, Instant::now(), 0f64);
    while last < target {
        if t0.elapsed() > timeout {
            return Err(format!("only {last} of {target} handled after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = ledger.tally().await.0;
        if now > last {
            longest = longest.max(last_change.elapsed().as_secs_f64());
            last = now;
            last_change = Instant::now();
        }
    }
    Ok(longest)
}

/// Waits until all `n` messages are handled, then reads the ledger and the
/// dead-letter stream into the scenario's figures.
async fn settled(
    ledger: &Ledger,
    client: &async_nats::Client,
    prefix: &str,
    n: u64,
    timeout: Duration,
    recovery_s: f64,
) -> Result<Figures, String> {
    wait_for(ledger, n, timeout).await?;
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(client, prefix).await;
    Ok(Figures {
        published: n,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s,
    })
}

async fn dlq_figures(client: &async_nats::Client, prefix: &str) -> (u64, u64) {
    let letters = stream_messages(client, &jetwire_tests::dlq_stream(prefix)).await;
    let mut keys: Vec<String> = letters
        .iter()
        .map(|m| {
            format!(
                "{:?}:{:?}",
                header(m, "Jetwire-Dlq-Stream"),
                header(m, "Jetwire-Dlq-Sequence")
            )
        })
        .collect();
    let total = keys.len() as u64;
    keys.sort();
    keys.dedup();
    (total, total - keys.len() as u64)
}

fn run_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    )
}

/// Messages through the main queue while `fault` runs at about a third
/// and two thirds of the way.
async fn through_faults(
    name: &str,
    (subject, handler): (&'static str, &'static str),
    n: u64,
    faults: impl Fn(usize, &mut Server) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> + Send,
    fault_count: usize,
) -> Result<Figures, String> {
    let mut server = Server::start();
    let prefix = unique_prefix(name);
    let ledger = Ledger::connect(&run_id(), name).await;
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&[handler])
        .state(ledger.clone())
        .state(Delay {
            per_call: Duration::from_millis(2),
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let pubs = {
        let publisher = publisher.clone();
        let name = name.to_owned();
        tokio::spawn(async move { publish_numbered(&publisher, subject, &name, 0..n).await })
    };
    let mut recovery_s: f64 = 0.0;
    for k in 0..fault_count {
        let target = n * (k as u64 + 1) / (fault_count as u64 + 1);
        wait_for(&ledger, target, Duration::from_secs(120)).await?;
        faults(k, &mut server).await;
        // From the moment the server is back to the first message handled after it.
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
    .await?;
    app.shutdown().await.map_err(|e| e.to_string())?;
    drop(server);
    Ok(f)
}

fn line(name: &str, f: &Figures) -> String {
    format!(
        "fault {name}: published={} handled_unique={} lost={} duplicates={} dlq={} recovery_s={:.2}",
        f.published,
        f.handled_unique,
        f.lost(),
        f.duplicates,
        f.dlq,
        f.recovery_s
    )
}

fn check(name: &str, f: &Figures, expected_dlq: u64) -> Result<String, String> {
    let l = line(name, f);
    if f.lost() != 0 {
        return Err(format!("{l}: messages lost"));
    }
    if f.dlq != expected_dlq {
        return Err(format!("{l}: expected {expected_dlq} dead letters"));
    }
    if f.dlq_duplicates != 0 {
        return Err(format!("{l}: {} duplicate dead letters", f.dlq_duplicates));
    }
    Ok(l)
}

async fn server_restart() -> Result<String, String> {
    let n = if full() { 20_000 } else { 4_000 };
    let f = through_faults(
        "server-restart",
        QUEUE,
        n,
        |_, server| Box::pin(async move { server.restart() }),
        2,
    )
    .await?;
    check("server-restart", &f, 0)
}

async fn server_freeze() -> Result<String, String> {
    let n = if full() { 20_000 } else { 3_000 };
    let f = through_faults(
        "server-freeze",
        QUEUE,
        n,
        |_, server| {
            Box::pin(async move {
                server.pause();
                tokio::time::sleep(Duration::from_secs(10)).await;
                server.resume();
            })
        },
        1,
    )
    .await?;
    check("server-freeze", &f, 0)
}

const QUEUE: (&str, &str) = ("queue.fault", "fault_job");
const EVENTS: (&str, &str) = ("fevents.data", "fault_event");

/// Deletes every durable on the server but jetwire's advisory reader.
fn delete_durables(server: &mut Server) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    let url = server.url();
    Box::pin(async move {
        use futures_util::StreamExt;
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut names = js.stream_names();
        while let Some(Ok(stream)) = names.next().await {
            if stream.ends_with("JETWIRE_ADVISORIES") {
                continue;
            }
            if let Ok(s) = js.get_stream(&stream).await {
                let mut consumers = s.consumer_names();
                while let Some(Ok(c)) = consumers.next().await {
                    let _ = s.delete_consumer(&c).await;
                }
            }
        }
    })
}

/// Scenario 7: the durable deleted by an operator, twice, while running.
async fn durable_deleted(
    name: &'static str,
    target: (&'static str, &'static str),
) -> Result<String, String> {
    let n = if full() { 20_000 } else { 6_000 };
    let f = through_faults(name, target, n, |_, server| delete_durables(server), 2).await?;
    check(name, &f, 0)
}

async fn slow_handler() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("slow");
    let ledger = Ledger::connect(&run_id(), "slow-handler").await;
    let n = if full() { 200 } else { 64 };
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_slow"])
        .state(ledger.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    publish_numbered(&app.publisher(), "queue.fault-slow", "slow", 0..n).await;
    let f = settled(
        &ledger,
        app.publisher().client(),
        &prefix,
        n,
        Duration::from_secs(60),
        0.0,
    )
    .await?;
    app.shutdown().await.map_err(|e| e.to_string())?;
    if f.duplicates != 0 {
        return Err(format!(
            "{}: a call slower than ack_wait was redelivered",
            line("slow-handler", &f)
        ));
    }
    check("slow-handler", &f, 0)
}

async fn poison_corpus() -> Result<String, String> {
    // A 1 MiB payload needs a server that accepts it.
    let server = Server::start_with_config("max_payload: 8MB\n");
    let prefix = unique_prefix("poison");
    let ledger = Ledger::connect(&run_id(), "poison-corpus").await;
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_typed"])
        .state(ledger.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!(
        "{{\"id\": 1, \"name\": \"{}\", \"tags\": []}}",
        "x".repeat(1 << 20)
    );
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("invalid json", b"{not json".to_vec()),
        (
            "wrong types",
            br#"{"id": "seven", "name": 7, "tags": "x"}"#.to_vec(),
        ),
        ("missing fields", br#"{"id": 3}"#.to_vec()),
        ("empty", Vec::new()),
        ("invalid utf-8", vec![0xff, 0xfe, b'{', 0x80]),
        ("deeply nested", nested.into_bytes()),
        (
            "1 MiB string in a wrong shape",
            format!("\"{}\"", "y".repeat(1 << 20)).into_bytes(),
        ),
        (
            "huge number",
            br#"{"id": 123456789012345678901234567890, "name": "n", "tags": []}"#.to_vec(),
        ),
        (
            "negative id",
            br#"{"id": -1, "name": "n", "tags": []}"#.to_vec(),
        ),
        ("null", b"null".to_vec()),
    ];
    let mut good = 0u64;
    for (i, (_, bytes)) in poison.iter().enumerate() {
        let ok = Typed {
            id: 1000 + i as u64,
            name: "ok".into(),
            tags: vec!["a".into()],
        };
        publisher
            .publish("queue.fault-poison", &ok)
            .await
            .map_err(|e| e.to_string())?;
        good += 1;
        publisher
            .publish_raw("queue.fault-poison", bytes.clone(), PublishOptions::new())
            .await
            .map_err(|e| format!("publishing poison {i}: {e}"))?;
    }
    // A valid 1 MiB message is handled, not refused.
    publisher
        .publish_raw(
            "queue.fault-poison",
            huge.into_bytes(),
            PublishOptions::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    good += 1;
    wait_for(&ledger, good, Duration::from_secs(60)).await?;
    let client = publisher.client().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = stream_messages(&client, &jetwire_tests::dlq_stream(&prefix)).await;
        if letters.len() >= poison.len() || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for m in &letters {
        if header(m, "Jetwire-Dlq-Reason") != Some("decode")
            || header(m, "Jetwire-Dlq-Attempts") != Some("1")
        {
            return Err(format!(
                "a poison message was dead-lettered as {:?} after {:?} attempts",
                header(m, "Jetwire-Dlq-Reason"),
                header(m, "Jetwire-Dlq-Attempts")
            ));
        }
    }
    let mut originals: Vec<Vec<u8>> = letters.iter().map(|m| m.payload.to_vec()).collect();
    let mut expected: Vec<Vec<u8>> = poison.iter().map(|(_, b)| b.clone()).collect();
    originals.sort();
    expected.sort();
    if originals != expected {
        return Err(format!(
            "the DLQ holds {} letters whose bytes are not exactly the poison set",
            letters.len()
        ));
    }
    let stats = app.stats();
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(&client, &prefix).await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    if stats[0].retried != 0 {
        return Err(format!(
            "{} poison deliveries were retried instead of dead-lettered",
            stats[0].retried
        ));
    }
    let f = Figures {
        published: good + poison.len() as u64,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s: 0.0,
    };
    check("poison-corpus", &f, poison.len() as u64)
}

async fn hostile_subjects_refused() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("hostile");
    let seen = HostileResults::default();
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_hostile"])
        .state(seen.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let client = publisher.client().clone();
    let count_all = || async {
        let js = async_nats::jetstream::new(client.clone());
        let mut total = 0;
        let mut names = js.stream_names();
        use futures_util::StreamExt;
        while let Some(Ok(name)) = names.next().await {
            if let Ok(mut s) = js.get_stream(&name).await
                && let Ok(info) = s.info().await
            {
                total += info.state.messages;
            }
        }
        total
    };
    let subjects = hostile_subjects();
    for s in &subjects {
        match publisher.publish(s, &1u64).await {
            Err(PublishError::InvalidSubject(_)) => {}
            other => {
                return Err(format!(
                    "Publisher accepted hostile subject {s:?}: {other:?}"
                ));
            }
        }
    }
    publisher
        .publish("queue.fault-hostile", &1u64)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.0.lock().expect("not poisoned").len() < subjects.len() {
        if Instant::now() > deadline {
            return Err("the handler did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted: Vec<String> = seen
        .0
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(_, r)| !r)
        .map(|(s, _)| format!("{s:?}"))
        .collect();
    if !accepted.is_empty() {
        return Err(format!("Context::publish accepted {}", accepted.join(", ")));
    }
    let total = count_all().await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    // Only the one trigger message was ever stored.
    if total != 0 {
        return Err(format!(
            "{total} messages remain stored; nothing hostile may be sent"
        ));
    }
    Ok(format!(
        "fault hostile-subjects: published=1 handled_unique=1 lost=0 duplicates=0 dlq=0 recovery_s=0.00\n  refused {} hostile publishes ({} subjects through Publisher and through Context::publish)",
        subjects.len() * 2,
        subjects.len()
    ))
}

async fn many_handlers() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("many");
    let ledger = Ledger::connect(&run_id(), "many-handlers").await;
    let per = if full() { 1_000 } else { 300 };
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let mut apps = Vec::new();
    for _ in 0..2 {
        apps.push(
            App::new(config(&server, &prefix, "faults"))
                .only(&MANY)
                .state(Crosstalk {
                    ledger: ledger.clone(),
                    wrong: wrong.clone(),
                })
                .start()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let publisher = apps[0].publisher();
    let mut acks = Vec::new();
    for id in 0..per {
        for i in 0..10 {
            for subject in [format!("queue.many.s{i}"), format!("many.s{i}")] {
                acks.push(
                    publisher
                        .send(&subject, &Job { id })
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        if acks.len() > 2000 {
            for a in acks.drain(..) {
                a.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for a in acks {
        a.await.map_err(|e| e.to_string())?;
    }
    let n = per * 20;
    let f = settled(
        &ledger,
        publisher.client(),
        &prefix,
        n,
        Duration::from_secs(120),
        0.0,
    )
    .await?;
    for app in apps {
        app.shutdown().await.map_err(|e| e.to_string())?;
    }
    let wrong = wrong.lock().expect("not poisoned").clone();
    if !wrong.is_empty() {
        return Err(format!("cross-talk: {}", wrong.join(", ")));
    }
    check("many-handlers", &f, 0)
}

const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");

/// Scenario 1: the consumer process SIGKILLed and restarted 5 times.
async fn consumer_killed() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("killed");
    let run = run_id();
    let ledger = Ledger::connect(&run, "consumer-killed").await;
    let n = if full() { 20_000 } else { 6_000 };
    let env = [
        ("LEDGER_RUN", run.as_str()),
        ("LEDGER_SCENARIO", "consumer-killed"),
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
    .await?;
    drop(worker);
    check("consumer-killed", &f, 0)
}

/// Scenario 5: a process SIGKILLed during the last delivery of failing
/// messages; with `wait`, no replica runs while their deliveries time out.
async fn last_delivery_killed(
    name: &'static str,
    subject: &str,
    handler: &str,
    wait: bool,
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
    if wait {
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

/// Scenario 6: SIGTERM with 50 calls in flight: all finish, exit 0, and
/// nothing is redelivered after a restart.
async fn sigterm_in_flight() -> Result<String, String> {
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

/// Scenario 8: a 3-node cluster with R3 streams: SIGKILL the stream leader
/// mid-run, then make the consumer leader step down.
async fn cluster_leader_loss() -> Result<String, String> {
    let mut servers = Server::cluster3();
    let urls = servers
        .iter()
        .map(|s| s.url())
        .collect::<Vec<_>>()
        .join(",");
    let prefix = unique_prefix("cluster");
    let ledger = Ledger::connect(&run_id(), "cluster-leader-loss").await;
    let cfg = jetwire::Config::builder()
        .url(&urls)
        .subject_prefix(&prefix)
        .app("faults")
        .stream_replicas(3)
        .build()
        .map_err(|e| e.to_string())?;
    // The cluster elects its meta leader first: retry startup for a while.
    let t_start = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let app = loop {
        match App::new(cfg.clone())
            .only(&["fault_job"])
            .state(ledger.clone())
            .state(Delay {
                per_call: Duration::from_millis(2),
            })
            .start()
            .await
        {
            Ok(app) => break app,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("cluster never came up: {e}")),
        }
    };
    eprintln!(
        "cluster: up and consuming after {:.1}s",
        t_start.elapsed().as_secs_f64()
    );
    let n = if full() { 20_000 } else { 4_000 };
    let publisher = app.publisher();
    let pubs = {
        let publisher = publisher.clone();
        tokio::spawn(
            async move { publish_numbered(&publisher, "queue.fault", "cluster", 0..n).await },
        )
    };
    let js = async_nats::jetstream::new(publisher.client().clone());
    let stream_name = jetwire::topology::queue_stream(Some(&prefix));
    wait_for(&ledger, n / 3, Duration::from_secs(120)).await?;
    let leader = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| e.to_string())?
        .info()
        .await
        .map_err(|e| e.to_string())?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .ok_or("the stream has no leader")?;
    let index: usize = leader
        .trim_start_matches('n')
        .parse()
        .map_err(|_| format!("unexpected leader name {leader}"))?;
    let t_kill = Instant::now();
    servers[index].kill();
    let stall_kill = longest_stall(&ledger, 2 * n / 3, Duration::from_secs(120)).await?;
    let kill_s = t_kill.elapsed().as_secs_f64();
    let durable = app.stats()[0].durable.clone();
    let _ = publisher
        .client()
        .request(
            format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{stream_name}.{durable}"),
            "".into(),
        )
        .await
        .map_err(|e| format!("consumer step-down: {e}"))?;
    let stall_stepdown = longest_stall(&ledger, n, Duration::from_secs(120)).await?;
    let publish_stall = pubs.await.map_err(|e| e.to_string())?;
    let recovery_s = stall_kill.max(stall_stepdown);
    let f = settled(
        &ledger,
        publisher.client(),
        &prefix,
        n,
        Duration::from_secs(180),
        recovery_s,
    )
    .await?;
    app.shutdown().await.map_err(|e| e.to_string())?;
    eprintln!("cluster: longest wait to store one publish: {publish_stall:.2}s");
    eprintln!(
        "cluster: leader {leader} killed; next third took {kill_s:.1}s, longest stall {stall_kill:.2}s; step-down stall {stall_stepdown:.2}s"
    );
    // While the stream elects a new leader nothing can be stored, so nothing
    // can be handled: that window is the server's (the longest wait to store
    // one publish). What jetwire may add on top of it is two missed pull
    // heartbeats (5 s each).
    if recovery_s > publish_stall + 10.0 {
        return Err(format!(
            "{}: stalled {recovery_s:.1}s, more than two heartbeats beyond the server's own {publish_stall:.1}s",
            line("cluster-leader-loss", &f)
        ));
    }
    check("cluster-leader-loss", &f, 0)
}

type Scenario = fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

#[allow(clippy::print_stdout)]
fn main() {
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("consumer-killed", || Box::pin(consumer_killed())),
        ("server-restart", || Box::pin(server_restart())),
        ("server-freeze", || Box::pin(server_freeze())),
        ("slow-handler", || Box::pin(slow_handler())),
        ("last-delivery-killed", || {
            Box::pin(last_delivery_killed(
                "last-delivery-killed",
                "queue.adv",
                "adv",
                false,
            ))
        }),
        ("last-delivery-killed-no-replica", || {
            Box::pin(last_delivery_killed(
                "last-delivery-killed-no-replica",
                "advev.created",
                "adv_event",
                true,
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
