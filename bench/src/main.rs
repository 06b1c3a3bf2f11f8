//! jetwire against a careful hand-written async-nats consumer, in the same
//! run, on the same server, as ratios.
//!
//! `cargo run --release -p jetwire-bench` starts its own nats-server and
//! prints one line per scenario: `scenario=<name> raw=<figure>
//! jetwire=<figure> ratio=<jetwire/raw>`, each figure the median of
//! interleaved runs (3 by default; `RUNS=n` to change). `QUICK=1` shrinks
//! every scenario for a smoke run. Both sides run on a current-thread tokio
//! runtime of their own, which measured fastest for the raw side.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use jetwire::{App, Publisher, queue, subscribe};
use jetwire_tests::Server;
use serde::{Deserialize, Serialize};

/// Calls in flight per side: jetwire's `concurrency`, raw's `for_each_concurrent`.
const CONCURRENCY: usize = 64;
/// Raw's pull batch: `fetch().max_messages(1000)` measured fastest.
const RAW_BATCH: usize = 1000;
/// Publish acks in flight when loading a stream or measuring publish.
const PUBLISH_WINDOW: usize = 4096;

/// The payload both sides decode.
#[derive(Debug, Serialize, Deserialize)]
pub struct Msg {
    id: u64,
    sent_ns: u64,
    body: String,
}

impl Msg {
    fn new(id: u64, size: usize) -> Msg {
        let mut m = Msg {
            id,
            sent_ns: 0,
            body: String::new(),
        };
        let overhead = serde_json::to_vec(&m).map(|v| v.len()).unwrap_or(40) + 20;
        m.body = "x".repeat(size.saturating_sub(overhead));
        m
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

static HANDLED: AtomicU64 = AtomicU64::new(0);
static RECORD_LATENCY: AtomicBool = AtomicBool::new(false);
static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn seen(m: &Msg) {
    if RECORD_LATENCY.load(Ordering::Relaxed) {
        let lat = now_ns().saturating_sub(m.sent_ns);
        LATENCIES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(lat);
    }
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

#[subscribe("bev.data", deliver = "all", concurrency = 64)]
async fn bench_event(m: Msg) {
    seen(&m);
}

#[queue("queue.bench", concurrency = 64)]
async fn bench_queue(m: Msg) {
    seen(&m);
}

include!(concat!(env!("OUT_DIR"), "/startup_handlers.rs"));

fn quick() -> bool {
    std::env::var("QUICK").is_ok_and(|v| v == "1")
}

fn runs() -> usize {
    std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` on a fresh current-thread runtime on its own thread, named
/// `name` (so `perf report --comm jetwire` shows one side's client alone).
fn on_own_runtime<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> T {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(f())
        })
        .expect("spawn a bench thread")
        .join()
        .expect("bench thread")
}

/// CPU time so far of this thread (the runtime's, which runs the whole
/// client) and of the server process, in nanoseconds.
#[derive(Clone, Copy)]
struct Cpu {
    client: u64,
    server: u64,
}

impl Cpu {
    fn now() -> Cpu {
        // schedstat's first field: ns this thread has run.
        let client = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // stat's utime and stime (fields 14 and 15), all threads, in ticks
        // of 10 ms: about 1% of a one-second run.
        let server = server()
            .pid()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .and_then(|s| {
                let after_name = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = after_name.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .map_or(0, |ticks| ticks * 10_000_000);
        Cpu { client, server }
    }
}

/// One throughput run: messages per second, and CPU microseconds per
/// message spent by the client and by the server.
#[derive(Clone, Copy)]
struct Throughput {
    rate: f64,
    client_us: f64,
    server_us: f64,
}

impl Throughput {
    fn since(t0: Instant, cpu0: Cpu, n: u64) -> Throughput {
        let cpu = Cpu::now();
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1000.0 / n as f64;
        Throughput {
            rate: n as f64 / t0.elapsed().as_secs_f64(),
            client_us: per(cpu.client, cpu0.client),
            server_us: per(cpu.server, cpu0.server),
        }
    }
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A prefix of its own for one run; every prefix has the same length, so
/// both sides' stream and durable names do (see [`Kind::durable`]).
fn fresh_prefix(name: &str) -> String {
    let tag: String = name.chars().take(3).collect();
    format!("b{:04}{tag:_<3}", SEQ.fetch_add(1, Ordering::Relaxed))
}

fn config(prefix: &str) -> jetwire::Config {
    jetwire::Config::builder()
        .url(server().url())
        .subject_prefix(prefix)
        .app("bench")
        .build()
        .expect("config")
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Events,
    Queue,
}

impl Kind {
    fn subject(self) -> &'static str {
        match self {
            Kind::Events => "bev.data",
            Kind::Queue => "queue.bench",
        }
    }
    fn stream(self, prefix: &str) -> String {
        jetwire::topology::default_stream(Some(prefix), self.subject())
    }
    /// The durable both sides consume with: the name jetwire gives its own.
    /// The server parses and routes the stream and durable names in every
    /// delivery's reply subject and every ack, so its cost per message
    /// grows with them: raw on a 3-letter durable against raw on jetwire's
    /// 22-letter one measured 0.87 for events. Same names, same work.
    fn durable(self, prefix: &str) -> String {
        let (kind, handler) = match self {
            Kind::Events => (jetwire::registry::Kind::Subscribe, "bench_event"),
            Kind::Queue => (jetwire::registry::Kind::Queue, "bench_queue"),
        };
        jetwire::topology::durable_for(Some(prefix), "bench", kind, handler, self.subject(), None)
    }
}

/// Publishes awaiting their ack, at most [`PUBLISH_WINDOW`]: adding one
/// more first awaits the oldest.
struct AckWindow<F>(VecDeque<F>);

impl<F, T, E> AckWindow<F>
where
    F: std::future::IntoFuture<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    fn new() -> Self {
        AckWindow(VecDeque::with_capacity(PUBLISH_WINDOW))
    }

    async fn push(&mut self, ack: F) {
        self.0.push_back(ack);
        if self.0.len() >= PUBLISH_WINDOW {
            self.0.pop_front().expect("non-empty").await.expect("ack");
        }
    }

    async fn drain(self) {
        for ack in self.0 {
            ack.await.expect("ack");
        }
    }
}

/// Creates the stream jetwire would create for `kind` under `prefix`.
async fn create_stream(js: &jetstream::Context, prefix: &str, kind: Kind) -> stream::Stream {
    let first = kind.subject().split('.').next().unwrap_or_default();
    js.create_stream(stream::Config {
        name: kind.stream(prefix),
        subjects: vec![format!("{prefix}.{first}.>")],
        retention: if kind == Kind::Queue {
            stream::RetentionPolicy::WorkQueue
        } else {
            stream::RetentionPolicy::Limits
        },
        ..Default::default()
    })
    .await
    .expect("stream")
}

/// The raw side's durable, named as jetwire's ([`Kind::durable`]):
/// explicit acks, `max_ack_pending` as given (0 is the server's default).
async fn raw_consumer(
    stream: &stream::Stream,
    durable: String,
    max_ack_pending: i64,
) -> jetstream::consumer::PullConsumer {
    stream
        .create_consumer(pull::Config {
            durable_name: Some(durable),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending,
            ..Default::default()
        })
        .await
        .expect("consumer")
}

/// Creates the stream jetwire would create, and fills it with `n` messages.
async fn preload(client: &async_nats::Client, prefix: &str, kind: Kind, n: u64, size: usize) {
    let js = jetstream::new(client.clone());
    create_stream(&js, prefix, kind).await;
    let subject = format!("{prefix}.{}", kind.subject());
    let mut acks = AckWindow::new();
    for id in 0..n {
        let body = serde_json::to_vec(&Msg::new(id, size)).expect("json");
        acks.push(
            js.publish(subject.clone(), body.into())
                .await
                .expect("publish"),
        )
        .await;
    }
    acks.drain().await;
}

/// A fresh prefix whose stream holds `n` messages, loaded on a thread of
/// its own: the consuming side's thread runs nothing else.
fn loaded(side: &str, kind: Kind, n: u64, size: usize) -> String {
    let prefix = fresh_prefix(side);
    let p = prefix.clone();
    on_own_runtime("load", move || {
        Box::pin(async move {
            let client = async_nats::connect(server().url()).await.expect("connect");
            preload(&client, &p, kind, n, size).await;
        })
    });
    prefix
}

/// Waits until the consumer has nothing pending and nothing unacked.
async fn all_acked(client: &async_nats::Client, stream: &str, durable: &str) {
    let js = jetstream::new(client.clone());
    let s = js.get_stream(stream).await.expect("stream");
    loop {
        if let Ok(info) = s.consumer_info(durable).await
            && info.num_pending == 0
            && info.num_ack_pending == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_handled(n: u64) {
    while HANDLED.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// jetwire consuming a preloaded stream: msgs/s from `start()` to all acked.
async fn jetwire_consume(kind: Kind, n: u64, prefix: String) -> Throughput {
    let client = async_nats::connect(server().url()).await.expect("connect");
    HANDLED.store(0, Ordering::Relaxed);
    let handler = if kind == Kind::Events {
        "bench_event"
    } else {
        "bench_queue"
    };
    let (t0, cpu0) = (Instant::now(), Cpu::now());
    let app = App::new(config(&prefix))
        .only(&[handler])
        .start()
        .await
        .expect("start");
    wait_handled(n).await;
    let durable = app.stats()[0].durable.clone();
    all_acked(&client, &kind.stream(&prefix), &durable).await;
    let run = Throughput::since(t0, cpu0, n);
    app.shutdown().await.expect("shutdown");
    run
}

/// The hand-written consumer: a `fetch(1000)` loop, each batch decoded and
/// acked with `for_each_concurrent(64)`.
async fn raw_consume(kind: Kind, n: u64, prefix: String) -> Throughput {
    // From nothing, as jetwire's `start()` is timed: connecting included.
    let (t0, cpu0) = (Instant::now(), Cpu::now());
    let client = async_nats::connect(server().url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(kind.stream(&prefix)).await.expect("stream");
    let consumer = raw_consumer(&stream, kind.durable(&prefix), 10_000).await;
    let count = AtomicU64::new(0);
    while count.load(Ordering::Relaxed) < n {
        let batch = consumer
            .fetch()
            .max_messages(RAW_BATCH)
            .messages()
            .await
            .expect("fetch");
        batch
            .for_each_concurrent(CONCURRENCY, |m| {
                let count = &count;
                async move {
                    let m = m.expect("message");
                    let msg: Msg = serde_json::from_slice(&m.payload).expect("decode");
                    std::hint::black_box(&msg);
                    m.ack().await.expect("ack");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
    }
    all_acked(&client, &kind.stream(&prefix), &kind.durable(&prefix)).await;
    Throughput::since(t0, cpu0, n)
}

/// Publishes at a fixed `rate` for `dur` and returns (p50, p99) in µs.
async fn latency(side: &'static str, rate: u64, dur: Duration) -> (f64, f64) {
    let prefix = fresh_prefix(side);
    let client = async_nats::connect(server().url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = create_stream(&js, &prefix, Kind::Events).await;
    LATENCIES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    HANDLED.store(0, Ordering::Relaxed);
    RECORD_LATENCY.store(true, Ordering::Relaxed);
    let raw_count = std::sync::Arc::new(AtomicU64::new(0));
    let (app, raw_task) = if side == "jetwire" {
        (
            Some(
                App::new(config(&prefix))
                    .only(&["bench_event"])
                    .start()
                    .await
                    .expect("start"),
            ),
            None,
        )
    } else {
        let consumer = raw_consumer(&stream, Kind::Events.durable(&prefix), 0).await;
        let count = raw_count.clone();
        let task = tokio::spawn(async move {
            let messages = consumer.messages().await.expect("messages");
            messages
                .for_each_concurrent(CONCURRENCY, |m| {
                    let count = count.clone();
                    async move {
                        let Ok(m) = m else { return };
                        if let Ok(msg) = serde_json::from_slice::<Msg>(&m.payload) {
                            seen(&msg);
                        }
                        let _ = m.ack().await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        });
        (None, Some(task))
    };
    let total = rate * dur.as_secs();
    let subject = format!("{prefix}.bev.data");
    let t0 = tokio::time::Instant::now();
    let mut acks = AckWindow::new();
    for id in 0..total {
        tokio::time::sleep_until(t0 + Duration::from_nanos(id * 1_000_000_000 / rate)).await;
        let mut m = Msg::new(id, 128);
        m.sent_ns = now_ns();
        let body = serde_json::to_vec(&m).expect("json");
        acks.push(
            js.publish(subject.clone(), body.into())
                .await
                .expect("publish"),
        )
        .await;
    }
    acks.drain().await;
    wait_handled(total).await;
    RECORD_LATENCY.store(false, Ordering::Relaxed);
    if let Some(app) = app {
        app.shutdown().await.expect("shutdown");
    }
    if let Some(t) = raw_task {
        t.abort();
    }
    let mut lat = std::mem::take(&mut *LATENCIES.lock().unwrap_or_else(|e| e.into_inner()));
    // The first second warms up connections and consumers.
    lat.drain(..(rate as usize).min(lat.len() / 2));
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    (pct(0.50), pct(0.99))
}

/// Publishes `n` messages with `PUBLISH_WINDOW` acks in flight: msgs/s.
async fn publish(side: &'static str, n: u64) -> Throughput {
    let prefix = fresh_prefix(side);
    let client = async_nats::connect(server().url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    create_stream(&js, &prefix, Kind::Events).await;
    let msg = Msg::new(0, 128);
    let (t0, cpu0) = (Instant::now(), Cpu::now());
    if side == "jetwire" {
        let publisher = Publisher::connect(&config(&prefix))
            .await
            .expect("publisher");
        let mut acks = AckWindow::new();
        for _ in 0..n {
            acks.push(publisher.send("bev.data", &msg).await.expect("send"))
                .await;
        }
        acks.drain().await;
    } else {
        // `raw-headers` sends what jetwire's publishes carry: a fresh UUIDv7
        // message id (which the server then deduplicates), content type, and
        // the id again as correlation id.
        let with_headers = side == "raw-headers";
        let subject = format!("{prefix}.bev.data");
        let mut acks = AckWindow::new();
        for _ in 0..n {
            let body = serde_json::to_vec(&msg).expect("json");
            let ack = if with_headers {
                let id = uuid::Uuid::now_v7().to_string();
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", id.as_str());
                h.insert("Content-Type", "application/json");
                h.insert("Jetwire-Correlation-Id", id.as_str());
                js.publish_with_headers(subject.clone(), h, body.into())
                    .await
            } else {
                js.publish(subject.clone(), body.into()).await
            };
            acks.push(ack.expect("publish")).await;
        }
        acks.drain().await;
    }
    Throughput::since(t0, cpu0, n)
}

/// Seconds from `start()` to consuming with 200 handlers; raw creates the
/// same 200 durables by hand.
async fn startup(side: &'static str) -> f64 {
    let prefix = fresh_prefix(side);
    let names: Vec<String> = (0..STARTUP_HANDLERS)
        .map(|i| format!("startup_h{i}"))
        .collect();
    let t0 = Instant::now();
    if side == "jetwire" {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let app = App::new(config(&prefix))
            .only(&refs)
            .start()
            .await
            .expect("start");
        let secs = t0.elapsed().as_secs_f64();
        app.shutdown().await.expect("shutdown");
        secs
    } else {
        let client = async_nats::connect(server().url()).await.expect("connect");
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: format!("{}_STARTUP", prefix.to_uppercase()),
                subjects: vec![format!("{prefix}.startup.>")],
                ..Default::default()
            })
            .await
            .expect("stream");
        for i in 0..STARTUP_HANDLERS {
            let c: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    &format!("bench-startup_h{i}"),
                    pull::Config {
                        durable_name: Some(format!("bench-startup_h{i}")),
                        filter_subject: format!("{prefix}.startup.h{i}"),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ..Default::default()
                    },
                )
                .await
                .expect("consumer");
            std::hint::black_box(c);
        }
        t0.elapsed().as_secs_f64()
    }
}

/// Peak RSS (MiB) of a child process consuming a backlog of `n`, loaded
/// by this process beforehand.
fn rss_child(side: &'static str, n: u64) -> f64 {
    let prefix = fresh_prefix("rss");
    let p = prefix.clone();
    on_own_runtime("load", move || {
        Box::pin(async move {
            let client = async_nats::connect(server().url()).await.expect("connect");
            preload(&client, &p, Kind::Events, n, 128).await;
        })
    });
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args(["rss-child", side, &n.to_string(), &server().url(), &prefix])
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "rss child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("child prints MiB")
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// In the child: consume the whole backlog; print peak RSS.
#[allow(clippy::print_stdout)]
fn rss_child_main(side: &str, n: u64, url: &str, prefix: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        if side == "jetwire" {
            let cfg = jetwire::Config::builder()
                .url(url)
                .subject_prefix(prefix)
                .app("bench")
                .build()
                .expect("config");
            let app = App::new(cfg)
                .only(&["bench_event"])
                .start()
                .await
                .expect("start");
            wait_handled(n).await;
            app.shutdown().await.expect("shutdown");
        } else {
            let js = jetstream::new(client.clone());
            let stream = js
                .get_stream(Kind::Events.stream(prefix))
                .await
                .expect("stream");
            let consumer = raw_consumer(&stream, Kind::Events.durable(prefix), 10_000).await;
            let mut count = 0;
            while count < n {
                let mut batch = consumer
                    .fetch()
                    .max_messages(RAW_BATCH)
                    .messages()
                    .await
                    .expect("fetch");
                while let Some(Ok(m)) = batch.next().await {
                    let msg: Msg = serde_json::from_slice(&m.payload).expect("decode");
                    std::hint::black_box(&msg);
                    m.ack().await.expect("ack");
                    count += 1;
                }
            }
        }
        client.flush().await.ok();
    });
    println!("{:.1}", peak_rss_mib());
}

#[allow(clippy::print_stdout)]
fn line(name: &str, raw: f64, jw: f64, unit: &str) {
    println!(
        "scenario={name} raw={raw:.1}{unit} jetwire={jw:.1}{unit} ratio={:.3}",
        jw / raw
    );
}

/// Runs both sides `runs()` times, interleaved: each side's figures.
/// `SIDE=raw` or `SIDE=jetwire` runs one side only, for profiling.
fn interleave<T>(raw: impl Fn() -> T, jw: impl Fn() -> T) -> (Vec<T>, Vec<T>) {
    let side = std::env::var("SIDE").unwrap_or_default();
    let (mut r, mut j) = (Vec::new(), Vec::new());
    for i in 0..runs() {
        // Each side goes first in every other round: whatever the server
        // carries from one run to the next falls on both sides alike.
        let raw_first = i % 2 == 0;
        if raw_first && side != "jetwire" {
            r.push(raw());
        }
        if side != "raw" {
            j.push(jw());
        }
        if !raw_first && side != "jetwire" {
            r.push(raw());
        }
    }
    (r, j)
}

/// The median of `f` over `runs`, or NaN for a side that did not run.
fn median_of<T>(runs: &[T], f: impl Fn(&T) -> f64) -> f64 {
    if runs.is_empty() {
        return f64::NAN;
    }
    median(runs.iter().map(f).collect())
}

fn interleaved(name: &str, unit: &str, raw: impl Fn() -> f64, jw: impl Fn() -> f64) {
    let (r, j) = interleave(raw, jw);
    line(name, median_of(&r, |x| *x), median_of(&j, |x| *x), unit);
}

/// A throughput scenario: its line, and where the CPU went per message.
fn throughput(name: &str, raw: impl Fn() -> Throughput, jw: impl Fn() -> Throughput) {
    let (r, j) = interleave(raw, jw);
    let both = |f: fn(&Throughput) -> f64| (median_of(&r, f), median_of(&j, f));
    let (rr, jr) = both(|t| t.rate);
    line(&format!("{name}-throughput"), rr, jr, "msg/s");
    let (rc, jc) = both(|t| t.client_us);
    line(&format!("{name}-client-cpu"), rc, jc, "us/msg");
    let (rs, js) = both(|t| t.server_us);
    line(&format!("{name}-server-cpu"), rs, js, "us/msg");
}

#[allow(clippy::print_stdout)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("rss-child") {
        rss_child_main(&args[1], args[2].parse().expect("n"), &args[3], &args[4]);
        return;
    }
    let only: Vec<&str> = args.iter().map(String::as_str).collect();
    let want = |s: &str| only.is_empty() || only.contains(&s);
    let q = quick();
    let (n, n4k, npub) = if q {
        (20_000, 5_000, 20_000)
    } else {
        (200_000, 50_000, 200_000)
    };
    println!(
        "# jetwire-bench: nats-server at {}, concurrency {CONCURRENCY}, {} interleaved runs, medians",
        server().url(),
        runs()
    );

    for (name, kind, count, size) in [
        ("events", Kind::Events, n, 128),
        ("queue", Kind::Queue, n, 128),
        ("events-4k", Kind::Events, n4k, 4096),
    ] {
        if want(name) {
            throughput(
                name,
                || {
                    let prefix = loaded("raw", kind, count, size);
                    on_own_runtime("raw", move || Box::pin(raw_consume(kind, count, prefix)))
                },
                || {
                    let prefix = loaded("jetwire", kind, count, size);
                    on_own_runtime("jetwire", move || {
                        Box::pin(jetwire_consume(kind, count, prefix))
                    })
                },
            );
        }
    }
    if want("latency") {
        let dur = Duration::from_secs(if q { 3 } else { 20 });
        let (mut r50, mut r99, mut j50, mut j99) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs() {
            let (a, b) = on_own_runtime("raw", move || Box::pin(latency("raw", 5000, dur)));
            r50.push(a);
            r99.push(b);
            let (a, b) = on_own_runtime("jetwire", move || Box::pin(latency("jetwire", 5000, dur)));
            j50.push(a);
            j99.push(b);
        }
        line("latency-p50", median(r50), median(j50), "us");
        line("latency-p99", median(r99), median(j99), "us");
    }
    if want("publish") {
        throughput(
            "publish",
            || on_own_runtime("raw", move || Box::pin(publish("raw", npub))),
            || on_own_runtime("jetwire", move || Box::pin(publish("jetwire", npub))),
        );
        // The same, with raw sending jetwire's headers: what the framework
        // costs beyond the message id the server deduplicates.
        throughput(
            "publish-same-headers",
            || on_own_runtime("raw", move || Box::pin(publish("raw-headers", npub))),
            || on_own_runtime("jetwire", move || Box::pin(publish("jetwire", npub))),
        );
    }
    if want("memory") {
        let (small, big) = if q {
            (10_000, 100_000)
        } else {
            (10_000, 1_000_000)
        };
        let jw_small = rss_child("jetwire", small);
        let jw_big = rss_child("jetwire", big);
        let raw_big = rss_child("raw", big);
        println!(
            "scenario=memory raw={raw_big:.1}MiB jetwire={jw_big:.1}MiB ratio={:.3} jetwire_backlog_{small}={jw_small:.1}MiB growth={:.1}MiB",
            jw_big / raw_big,
            jw_big - jw_small
        );
    }
    if want("startup") {
        interleaved(
            "startup-200-handlers",
            "s",
            || on_own_runtime("raw", move || Box::pin(startup("raw"))),
            || on_own_runtime("jetwire", move || Box::pin(startup("jetwire"))),
        );
    }
}
