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
use jetwire_tests::{Ledger, Server, config, header, stream_messages, unique_prefix};
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
    fn lost(&self, expected_dlq: u64) -> u64 {
        (self.published - expected_dlq).saturating_sub(self.handled_unique)
    }
}

async fn publish_numbered(
    publisher: &Publisher,
    subject: &str,
    scenario: &str,
    ids: std::ops::Range<u64>,
) {
    for id in ids {
        let opts = || PublishOptions::new().message_id(format!("{scenario}-{id}"));
        // The server may be down or frozen: retry with the same id until stored.
        while publisher
            .publish_with(subject, &Job { id }, opts())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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
    n: u64,
    faults: impl Fn(usize, &mut Server) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> + Send,
    fault_count: usize,
) -> Result<Figures, String> {
    let mut server = Server::start();
    let prefix = unique_prefix(name);
    let ledger = Ledger::connect(&run_id(), name).await;
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_job"])
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
        tokio::spawn(async move { publish_numbered(&publisher, "queue.fault", &name, 0..n).await })
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
    wait_for(&ledger, n, Duration::from_secs(180)).await?;
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(publisher.client(), &prefix).await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    drop(server);
    Ok(Figures {
        published: n,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s,
    })
}

fn line(name: &str, f: &Figures, expected_dlq: u64) -> String {
    format!(
        "fault {name}: published={} handled_unique={} lost={} duplicates={} dlq={} recovery_s={:.2}",
        f.published,
        f.handled_unique,
        f.lost(expected_dlq),
        f.duplicates,
        f.dlq,
        f.recovery_s
    )
}

fn check(name: &str, f: &Figures, expected_dlq: u64) -> Result<String, String> {
    let l = line(name, f, expected_dlq);
    if f.lost(expected_dlq) != 0 {
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

async fn durable_deleted() -> Result<String, String> {
    let n = if full() { 20_000 } else { 4_000 };
    let f = through_faults(
        "durable-deleted",
        n,
        |_, server| {
            let url = server.url();
            Box::pin(async move {
                let client = async_nats::connect(url).await.expect("connect");
                let js = async_nats::jetstream::new(client);
                let mut names = js.stream_names();
                use futures_util::StreamExt;
                while let Some(Ok(stream)) = names.next().await {
                    if stream.ends_with("_QUEUE")
                        && let Ok(s) = js.get_stream(&stream).await
                    {
                        let mut consumers = s.consumer_names();
                        while let Some(Ok(c)) = consumers.next().await {
                            let _ = s.delete_consumer(&c).await;
                        }
                    }
                }
            })
        },
        1,
    )
    .await?;
    check("durable-deleted", &f, 0)
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
    wait_for(&ledger, n, Duration::from_secs(60)).await?;
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(app.publisher().client(), &prefix).await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    let f = Figures {
        published: n,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s: 0.0,
    };
    if f.duplicates != 0 {
        return Err(format!(
            "{}: a call slower than ack_wait was redelivered",
            line("slow-handler", &f, 0)
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
        "fault hostile-subjects: published=1 handled_unique=1 lost=0 duplicates=0 dlq=0 recovery_s=0.00 refused={}",
        subjects.len() * 2
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
    wait_for(&ledger, n, Duration::from_secs(120)).await?;
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(publisher.client(), &prefix).await;
    for app in apps {
        app.shutdown().await.map_err(|e| e.to_string())?;
    }
    let wrong = wrong.lock().expect("not poisoned").clone();
    if !wrong.is_empty() {
        return Err(format!("cross-talk: {}", wrong.join(", ")));
    }
    let f = Figures {
        published: n,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s: 0.0,
    };
    check("many-handlers", &f, 0)
}

type Scenario = fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

#[allow(clippy::print_stdout)]
fn main() {
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("server-restart", || Box::pin(server_restart())),
        ("server-freeze", || Box::pin(server_freeze())),
        ("slow-handler", || Box::pin(slow_handler())),
        ("durable-deleted", || Box::pin(durable_deleted())),
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
                println!("{line} ({:.1}s)", t0.elapsed().as_secs_f64());
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
