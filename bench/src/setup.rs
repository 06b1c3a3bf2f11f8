//! What both sides share: the payload and its handlers, the server, stream
//! and durable setup, CPU accounting, and the run parameters.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull, stream};
use jetwire::{queue, subscribe};
use jetwire_tests::Server;
use serde::{Deserialize, Serialize};

/// Calls in flight per side: jetwire's `concurrency`, raw's `for_each_concurrent`.
pub(crate) const CONCURRENCY: usize = 64;
/// Raw's pull batch: `fetch().max_messages(1000)` measured fastest.
pub(crate) const RAW_BATCH: usize = 1000;
/// Publish acks in flight when loading a stream or measuring publish.
pub(crate) const PUBLISH_WINDOW: usize = 4096;

/// The payload both sides decode.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Msg {
    pub(crate) id: u64,
    pub(crate) sent_ns: u64,
    pub(crate) body: String,
}

impl Msg {
    pub(crate) fn new(id: u64, size: usize) -> Msg {
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

/// [`Msg`] as a Protocol Buffers message.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PbMsg {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) sent_ns: u64,
    #[prost(string, tag = "3")]
    pub(crate) body: String,
}

/// `m` as `kind`'s handler reads it, and its `Content-Type`.
pub(crate) fn encode(kind: Kind, m: &Msg) -> (Vec<u8>, &'static str) {
    match kind {
        Kind::MsgPack => (
            rmp_serde::to_vec_named(m).expect("msgpack"),
            "application/msgpack",
        ),
        Kind::Protobuf => {
            let pb = PbMsg {
                id: m.id,
                sent_ns: m.sent_ns,
                body: m.body.clone(),
            };
            (prost::Message::encode_to_vec(&pb), "application/protobuf")
        }
        _ => (serde_json::to_vec(m).expect("json"), "application/json"),
    }
}

/// What the hand-written consumer does with a payload of `kind`: decode it.
pub(crate) fn decode(kind: Kind, bytes: &[u8]) {
    match kind {
        Kind::MsgPack => {
            let m: Msg = rmp_serde::from_slice(bytes).expect("msgpack");
            std::hint::black_box(&m);
        }
        Kind::Protobuf => {
            let m = <PbMsg as prost::Message>::decode(bytes).expect("protobuf");
            std::hint::black_box(&m);
        }
        _ => {
            let m: Msg = serde_json::from_slice(bytes).expect("decode");
            std::hint::black_box(&m);
        }
    }
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) static HANDLED: AtomicU64 = AtomicU64::new(0);
/// What each of the 200 generated handlers handled, and when it last did
/// (ns since 1970): the many-handlers scenario's per-handler rates.
pub(crate) static BY_HANDLER: [AtomicU64; 200] = [const { AtomicU64::new(0) }; 200];
pub(crate) static LAST_BY_HANDLER: [AtomicU64; 200] = [const { AtomicU64::new(0) }; 200];

/// A generated handler's call: counted, with its time.
pub(crate) fn seen_by(handler: usize) {
    BY_HANDLER[handler].fetch_add(1, Ordering::Relaxed);
    LAST_BY_HANDLER[handler].store(now_ns(), Ordering::Relaxed);
    HANDLED.fetch_add(1, Ordering::Relaxed);
}
pub(crate) static RECORD_LATENCY: AtomicBool = AtomicBool::new(false);
pub(crate) static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

pub(crate) fn seen(m: &Msg) {
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
pub(crate) async fn bench_event(m: Msg) {
    seen(&m);
}

#[queue("queue.bench", concurrency = 64)]
pub(crate) async fn bench_queue(m: Msg) {
    seen(&m);
}

/// The same, allowed one run: every run is its last, so each waits until
/// its loop's record of last runs begun holds its mark.
#[queue("queue.bench-once", concurrency = 64, max_deliver = 1)]
pub(crate) async fn bench_queue_once(m: Msg) {
    seen(&m);
}

/// The work-queue handler, saving one checkpoint per message: what a
/// checkpoint costs a call.
#[queue("queue.bench-ckpt", concurrency = 64)]
pub(crate) async fn bench_checkpoint(
    m: Msg,
    ctx: jetwire::Context,
) -> Result<(), jetwire::HandlerError> {
    let began = std::time::Instant::now();
    ctx.checkpoint(&m.id).await?;
    let waited = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
    CHECKPOINT_WAITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(waited);
    seen(&m);
    Ok(())
}

/// How long each call of [`bench_checkpoint`] waited for its checkpoint to
/// be stored, in microseconds.
pub(crate) static CHECKPOINT_WAITS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// The work-queue handler in 16 partitions: one message in flight per
/// partition, each key's messages in order.
#[queue("queue.bench-part", partitions = 16)]
pub(crate) async fn bench_partitioned(m: Msg) {
    seen(&m);
}

/// The partitions of [`bench_partitioned`], and the keys spread over them.
pub(crate) const PARTITIONS: u32 = 16;
pub(crate) const KEYS: u64 = 64;

include!(concat!(env!("OUT_DIR"), "/startup_handlers.rs"));

pub(crate) fn quick() -> bool {
    std::env::var("QUICK").is_ok_and(|v| v == "1")
}

pub(crate) fn runs() -> usize {
    std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` on a fresh current-thread runtime on its own thread, named
/// `name` (so `perf report --comm jetwire` shows one side's client alone).
pub(crate) fn on_own_runtime<T: Send + 'static>(
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
pub(crate) struct Cpu {
    pub(crate) client: u64,
    pub(crate) server: u64,
}

impl Cpu {
    pub(crate) fn now() -> Cpu {
        // schedstat's first field: ns this thread has run.
        let client = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // stat's utime and stime (fields 14 and 15), all threads, in ticks
        // of 10 ms: about 1% of a one-second run.
        // On a cluster, all three servers together.
        let server = servers()
            .iter()
            .filter_map(Server::pid)
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|s| {
                let after_name = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = after_name.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .sum::<u64>()
            * 10_000_000;
        Cpu { client, server }
    }
}

/// One throughput run: messages per second, and CPU microseconds per
/// message spent by the client and by the server.
#[derive(Clone, Copy)]
pub(crate) struct Throughput {
    pub(crate) rate: f64,
    pub(crate) client_us: f64,
    pub(crate) server_us: f64,
}

impl Throughput {
    pub(crate) fn since(t0: Instant, cpu0: Cpu, n: u64) -> Throughput {
        let cpu = Cpu::now();
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1000.0 / n as f64;
        Throughput {
            rate: n as f64 / t0.elapsed().as_secs_f64(),
            client_us: per(cpu.client, cpu0.client),
            server_us: per(cpu.server, cpu0.server),
        }
    }
}

pub(crate) static SERVERS: OnceLock<Vec<Server>> = OnceLock::new();

/// Whether the run is on a 3-node cluster with R3 streams (`CLUSTER=1`).
pub(crate) fn clustered() -> bool {
    std::env::var("CLUSTER").is_ok_and(|v| v == "1")
}

/// The streams' replicas: 3 on the cluster, else 1.
pub(crate) fn replicas() -> usize {
    if clustered() { 3 } else { 1 }
}

/// Every server of the run: one, or the three of the cluster.
pub(crate) fn servers() -> &'static [Server] {
    SERVERS.get_or_init(|| {
        if !clustered() {
            return vec![Server::start()];
        }
        let servers = Server::cluster3();
        let url = servers[0].url();
        // Until the cluster has a JetStream meta leader, stream creates
        // fail: wait for it, on a thread of its own (this may be called
        // inside a runtime).
        on_own_runtime("cluster", move || {
            Box::pin(async move {
                let client = async_nats::connect(url).await.expect("connect");
                let js = jetstream::new(client);
                for _ in 0..300 {
                    if js.query_account().await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("the cluster has no JetStream leader after 30 s");
            })
        });
        servers
    })
}

/// The server clients connect to: the only one, or the cluster's first.
pub(crate) fn server() -> &'static Server {
    &servers()[0]
}

pub(crate) static SEQ: AtomicU64 = AtomicU64::new(0);

/// A prefix of its own for one run; every prefix has the same length, so
/// both sides' stream and durable names do (see [`Kind::durable`]).
pub(crate) fn fresh_prefix(name: &str) -> String {
    let tag: String = name.chars().take(3).collect();
    format!("b{:04}{tag:_<3}", SEQ.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn config(prefix: &str) -> jetwire::Config {
    let mut b = jetwire::Config::builder()
        .url(server().url())
        .subject_prefix(prefix)
        .stream_replicas(replicas())
        .app("bench");
    if let Some(addr) = crate::observed::http_addr() {
        b = b.http_addr(addr);
    }
    b.build().expect("config")
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Events,
    Queue,
    /// A work queue whose handler has `max_deliver = 1`.
    QueueOnce,
    /// A work queue whose handler saves a checkpoint per message.
    Checkpoint,
    /// A work queue in partitions, each message keyed with one of [`KEYS`].
    Partitioned,
    /// The work queue's handler behind one middleware that only calls
    /// `next`.
    Middleware,
    /// A work queue of MessagePack payloads.
    MsgPack,
    /// A work queue of Protocol Buffers payloads.
    Protobuf,
}

impl Kind {
    pub(crate) fn subject(self) -> &'static str {
        match self {
            Kind::Events => "bev.data",
            Kind::Queue | Kind::Middleware => "queue.bench",
            Kind::QueueOnce => "queue.bench-once",
            Kind::Checkpoint => "queue.bench-ckpt",
            Kind::Partitioned => "queue.bench-part",
            Kind::MsgPack => "queue.bench-mp",
            Kind::Protobuf => "queue.bench-pb",
        }
    }

    /// The handler jetwire runs for it.
    pub(crate) fn handler(self) -> &'static str {
        match self {
            Kind::Events => "bench_event",
            Kind::Queue | Kind::Middleware => "bench_queue",
            Kind::QueueOnce => "bench_queue_once",
            Kind::Checkpoint => "bench_checkpoint",
            Kind::Partitioned => "bench_partitioned",
            Kind::MsgPack => "bench_msgpack",
            Kind::Protobuf => "bench_protobuf",
        }
    }
    pub(crate) fn stream(self, prefix: &str) -> String {
        jetwire::topology::default_stream(Some(prefix), self.subject())
    }
    /// The durable both sides consume with: the name jetwire gives its own.
    /// The server parses and routes the stream and durable names in every
    /// delivery's reply subject and every ack, so its cost per message
    /// grows with them: raw on a 3-letter durable against raw on jetwire's
    /// 22-letter one measured 0.87 for events. Same names, same work.
    pub(crate) fn durable(self, prefix: &str) -> String {
        let kind = match self {
            Kind::Events => jetwire::registry::Kind::Subscribe,
            _ => jetwire::registry::Kind::Queue,
        };
        let handler = self.handler();
        jetwire::topology::durable_for(Some(prefix), "bench", kind, handler, self.subject(), None)
    }
}

/// Publishes awaiting their ack, at most [`PUBLISH_WINDOW`]: adding one
/// more first awaits the oldest.
pub(crate) struct AckWindow<F>(pub(crate) VecDeque<F>);

impl<F, T, E> AckWindow<F>
where
    F: std::future::IntoFuture<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    pub(crate) fn new() -> Self {
        AckWindow(VecDeque::with_capacity(PUBLISH_WINDOW))
    }

    pub(crate) async fn push(&mut self, ack: F) {
        self.0.push_back(ack);
        if self.0.len() >= PUBLISH_WINDOW {
            self.0.pop_front().expect("non-empty").await.expect("ack");
        }
    }

    pub(crate) async fn drain(self) {
        for ack in self.0 {
            ack.await.expect("ack");
        }
    }
}

/// Publishes message `id` of a stream paced at `rate` from `t0`, stamped
/// with the time it is sent; its ack goes into `acks`.
pub(crate) async fn publish_paced(
    js: &jetstream::Context,
    subject: &str,
    (t0, rate, id): (tokio::time::Instant, u64, u64),
    acks: &mut AckWindow<jetstream::context::PublishAckFuture>,
) {
    tokio::time::sleep_until(t0 + Duration::from_nanos(id * 1_000_000_000 / rate)).await;
    let mut m = Msg::new(id, 128);
    m.sent_ns = now_ns();
    let body = serde_json::to_vec(&m).expect("json");
    let ack = js
        .publish(subject.to_owned(), body.into())
        .await
        .expect("publish");
    acks.push(ack).await;
}

/// Creates the stream jetwire would create for `kind` under `prefix`.
pub(crate) async fn create_stream(
    js: &jetstream::Context,
    prefix: &str,
    kind: Kind,
) -> stream::Stream {
    let first = kind.subject().split('.').next().unwrap_or_default();
    js.create_stream(stream::Config {
        name: kind.stream(prefix),
        subjects: vec![format!("{prefix}.{first}.>")],
        num_replicas: replicas(),
        retention: if kind != Kind::Events {
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
pub(crate) async fn raw_consumer(
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
pub(crate) async fn preload(
    client: &async_nats::Client,
    prefix: &str,
    kind: Kind,
    n: u64,
    size: usize,
) {
    let js = jetstream::new(client.clone());
    create_stream(&js, prefix, kind).await;
    let subject = format!("{prefix}.{}", kind.subject());
    let mut acks = AckWindow::new();
    for id in 0..n {
        let (body, content_type) = encode(kind, &Msg::new(id, size));
        // Where a keyed publish goes: its key's partition.
        let to = match kind {
            Kind::Partitioned => jetwire::topology::partition_subject(
                &subject,
                jetwire::topology::partition_of(&format!("k{}", id % KEYS), PARTITIONS),
            ),
            _ => subject.clone(),
        };
        // The JSON scenarios' messages have no headers, as before codecs.
        let published = match kind {
            Kind::MsgPack | Kind::Protobuf => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Content-Type", content_type);
                js.publish_with_headers(to, headers, body.into()).await
            }
            _ => js.publish(to, body.into()).await,
        };
        acks.push(published.expect("publish")).await;
    }
    acks.drain().await;
}

/// A fresh prefix whose stream holds `n` messages, loaded on a thread of
/// its own: the consuming side's thread runs nothing else.
pub(crate) fn loaded(side: &str, kind: Kind, n: u64, size: usize) -> String {
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
pub(crate) async fn all_acked(client: &async_nats::Client, stream: &str, durable: &str) {
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

pub(crate) async fn wait_handled(n: u64) {
    while HANDLED.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
