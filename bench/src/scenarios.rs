//! The scenarios, each side's version next to the other's: consuming a
//! backlog, latency at a fixed rate, publishing, and startup; and how
//! jetwire's cost grows: many handlers, many apps on one stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use jetwire::publish::Message;
use jetwire::{App, PublishOptions, Publisher};

use crate::setup::{
    AckWindow, BY_HANDLER, CONCURRENCY, Cpu, HANDLED, Kind, LAST_BY_HANDLER, LATENCIES, Msg,
    PARTITIONS, RAW_BATCH, RECORD_LATENCY, STARTUP_HANDLERS, Throughput, all_acked, config,
    create_stream, fresh_prefix, now_ns, publish_paced, raw_consumer, seen, server, wait_handled,
};

/// jetwire consuming a preloaded stream: msgs/s from `start()` to all acked.
pub(crate) async fn jetwire_consume(kind: Kind, n: u64, prefix: String) -> Throughput {
    let client = async_nats::connect(server().url()).await.expect("connect");
    HANDLED.store(0, Ordering::Relaxed);
    let handler = kind.handler();
    let (t0, cpu0) = (Instant::now(), Cpu::now());
    let mut app = App::new(config(&prefix)).only(&[handler]);
    if kind == Kind::Middleware {
        app = app.middleware(jetwire::middleware::from_fn(
            |delivery, next: jetwire::middleware::Next| next.run(delivery),
        ));
    }
    let app = app.start().await.expect("start");
    if std::env::var("SHOW_START").is_ok() {
        eprintln!("start took {:?}", t0.elapsed());
    }
    wait_handled(n).await;
    let durable = app.stats()[0].durable.clone();
    all_acked(&client, &kind.stream(&prefix), &durable).await;
    if kind == Kind::Partitioned {
        for i in 0..PARTITIONS {
            let partition = jetwire::topology::partition_durable(&durable, i);
            all_acked(&client, &kind.stream(&prefix), &partition).await;
        }
    }
    let run = Throughput::since(t0, cpu0, n);
    app.shutdown().await.expect("shutdown");
    run
}

/// `apps` apps of one process, each with a durable of its own on one
/// event stream preloaded with `n` messages, all consuming it: the run over
/// every delivery (`apps × n`), and a line with the slowest and fastest
/// app's rate.
#[allow(clippy::print_stdout)]
pub(crate) async fn fan_out(apps: usize, n: u64, prefix: String) -> Throughput {
    let client = async_nats::connect(server().url()).await.expect("connect");
    let (t0, cpu0) = (Instant::now(), Cpu::now());
    let mut running = Vec::with_capacity(apps);
    for i in 0..apps {
        let mut config = config(&prefix);
        config.app = format!("bench{i}");
        let app = App::new(config).only(&["bench_event"]).start();
        running.push(app.await.expect("start"));
    }
    let stream = Kind::Events.stream(&prefix);
    let durables: Vec<String> = running
        .iter()
        .map(|a| a.stats()[0].durable.clone())
        .collect();
    let took = futures_util::future::join_all(durables.iter().map(|durable| async {
        all_acked(&client, &stream, durable).await;
        t0.elapsed().as_secs_f64()
    }))
    .await;
    let run = Throughput::since(t0, cpu0, apps as u64 * n);
    let rates: Vec<f64> = took.iter().map(|s| n as f64 / s).collect();
    let fastest = rates.iter().copied().fold(0.0, f64::max);
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "scenario=fan-out-apps apps={apps} slowest={slowest:.0}msg/s fastest={fastest:.0}msg/s ratio={:.3}",
        slowest / fastest
    );
    for app in running {
        app.shutdown().await.expect("shutdown");
    }
    run
}

/// The hand-written consumer: a `fetch(1000)` loop, each batch decoded and
/// acked with `for_each_concurrent(64)`.
pub(crate) async fn raw_consume(kind: Kind, n: u64, prefix: String) -> Throughput {
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
                    crate::setup::decode(kind, &m.payload);
                    m.ack().await.expect("ack");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
    }
    all_acked(&client, &kind.stream(&prefix), &kind.durable(&prefix)).await;
    Throughput::since(t0, cpu0, n)
}

/// Publishes at a fixed `rate` for `dur` and returns p50, p99 and p99.9
/// in µs, and how busy the side's thread and the server were meanwhile
/// (CPU time over wall time, in %).
pub(crate) async fn latency(side: &'static str, rate: u64, dur: Duration) -> [f64; 5] {
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
                // On the publisher's connection, as raw consumes on it: a
                // second socket's reader on the one thread costs the median
                // 40-100 µs and spreads the tail.
                App::new(config(&prefix))
                    .only(&["bench_event"])
                    .with_client(client.clone())
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
    let cpu0 = Cpu::now();
    let mut acks = AckWindow::new();
    for id in 0..total {
        publish_paced(&js, &subject, (t0, rate, id), &mut acks).await;
    }
    acks.drain().await;
    wait_handled(total).await;
    let (cpu1, wall) = (Cpu::now(), t0.elapsed().as_nanos() as f64);
    let busy = |a: u64, b: u64| b.saturating_sub(a) as f64 / wall * 100.0;
    let (client_busy, server_busy) = (
        busy(cpu0.client, cpu1.client),
        busy(cpu0.server, cpu1.server),
    );
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
    [pct(0.50), pct(0.99), pct(0.999), client_busy, server_busy]
}

/// Publishes `n` messages with `PUBLISH_WINDOW` acks in flight: msgs/s.
pub(crate) async fn publish(side: &'static str, n: u64) -> Throughput {
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

/// Publishes `n` messages as one `publish_fast` call (the server's fast
/// batch): msgs/s. `labelled`: built by `Message::json`, with jetwire's
/// headers (a fresh message id the server deduplicates, content type,
/// correlation id), as raw's `raw-headers`; else with none, as `raw`.
pub(crate) async fn publish_fast(n: u64, labelled: bool) -> Throughput {
    let prefix = fresh_prefix("jetwire");
    let client = async_nats::connect(server().url()).await.expect("connect");
    let publisher = Publisher::from_client(client, &config(&prefix));
    publisher
        .ensure_streams(&["bev.data"])
        .await
        .expect("the stream");
    let msg = Msg::new(0, 128);
    let (t0, cpu0) = (Instant::now(), Cpu::now());
    let messages = (0..n).map(|_| {
        if labelled {
            Message::json("bev.data", &msg, PublishOptions::new()).expect("a message")
        } else {
            let body = serde_json::to_vec(&msg).expect("json");
            Message::from_parts("bev.data", Default::default(), body).expect("a message")
        }
    });
    let receipt = publisher.publish_fast(messages).await.expect("stored");
    assert_eq!(receipt.count, n, "every message stored");
    Throughput::since(t0, cpu0, n)
}

/// The names of the 200 handlers `build.rs` generates.
fn generated_handlers() -> Vec<String> {
    (0..STARTUP_HANDLERS)
        .map(|i| format!("startup_h{i}"))
        .collect()
}

/// Seconds from `start()` to consuming with 200 handlers; raw creates the
/// same 200 durables by hand.
pub(crate) async fn startup(side: &'static str) -> f64 {
    let prefix = fresh_prefix(side);
    let names = generated_handlers();
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

/// An app running all 200 generated handlers, `busy` of them with work:
/// a backlog of `n` events loaded round-robin over their subjects (after
/// a first start made the stream and the durables), then timed from
/// `start()` until every one is handled. Prints how evenly the busy
/// handlers were served: the slowest one's rate over the fastest one's,
/// each its messages over the time to its last.
#[allow(clippy::print_stdout)]
pub(crate) async fn many_handlers(busy: usize, n: u64) -> Throughput {
    let prefix = fresh_prefix("many");
    let names = generated_handlers();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let start = || App::new(config(&prefix)).only(&refs).start();
    start()
        .await
        .expect("start")
        .shutdown()
        .await
        .expect("shutdown");
    let publisher = Publisher::connect(&config(&prefix))
        .await
        .expect("publisher");
    let subjects: Vec<String> = (0..busy).map(|i| format!("startup.h{i}")).collect();
    let msg = Msg::new(0, 128);
    let mut acks = AckWindow::new();
    for k in 0..n {
        let subject = &subjects[k as usize % busy];
        acks.push(publisher.send(subject, &msg).await.expect("send"))
            .await;
    }
    acks.drain().await;
    HANDLED.store(0, Ordering::Relaxed);
    for i in 0..STARTUP_HANDLERS {
        BY_HANDLER[i].store(0, Ordering::Relaxed);
        LAST_BY_HANDLER[i].store(0, Ordering::Relaxed);
    }
    let (t0, cpu0, started_ns) = (Instant::now(), Cpu::now(), now_ns());
    let app = start().await.expect("start");
    wait_handled(n).await;
    let run = Throughput::since(t0, cpu0, n);
    let rates: Vec<f64> = (0..busy)
        .map(|i| {
            let done = BY_HANDLER[i].load(Ordering::Relaxed) as f64;
            let took = LAST_BY_HANDLER[i]
                .load(Ordering::Relaxed)
                .saturating_sub(started_ns)
                .max(1) as f64;
            done / (took / 1e9)
        })
        .collect();
    let fastest = rates.iter().copied().fold(0.0, f64::max);
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "scenario=many-handlers-fairness busy={busy} slowest={slowest:.0}msg/s fastest={fastest:.0}msg/s ratio={:.3}",
        slowest / fastest
    );
    app.shutdown().await.expect("shutdown");
    run
}
