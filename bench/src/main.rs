//! jetwire against a careful hand-written async-nats consumer, in the same
//! run, on the same server, as ratios.
//!
//! `cargo run --release -p jetwire-bench` starts its own nats-server and
//! prints one line per scenario: `scenario=<name> raw=<figure>
//! jetwire=<figure> ratio=<jetwire/raw>`, each figure the median of
//! interleaved runs (3 by default; `RUNS=n` to change). `QUICK=1` shrinks
//! every scenario for a smoke run. Both sides run on a current-thread tokio
//! runtime of their own, which measured fastest for the raw side.

use std::time::Duration;

use crate::rss::{rss_child, rss_child_main};
use crate::scenarios::{
    fan_out, jetwire_consume, latency, many_handlers, publish, publish_fast, raw_consume, startup,
};
use crate::setup::{
    CONCURRENCY, Kind, Throughput, loaded, median, on_own_runtime, quick, runs, server,
};

mod codecs;
mod dlq;
mod observed;
mod outbox;
mod rss;
mod scenarios;
mod setup;
mod soak;

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

/// A rate measured on both sides, interleaved: its line.
fn throughput_rate(name: &str, raw: impl Fn() -> f64, jw: impl Fn() -> f64) {
    interleaved(name, "rows/s", raw, jw);
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

/// The same jetwire work queue as `base` and as `other`, interleaved:
/// what `other`'s difference costs.
fn jetwire_against(name: &str, base: Kind, other: Kind, count: u64) {
    let side = |kind: Kind| {
        move || {
            let prefix = loaded("jetwire", kind, count, 128);
            on_own_runtime("jetwire", move || {
                Box::pin(jetwire_consume(kind, count, prefix))
            })
        }
    };
    throughput(name, side(base), side(other));
}

/// The outbox relay against a hand-written one, on SQLite, and its latency.
#[allow(clippy::print_stdout)]
fn outbox_scenarios(q: bool) {
    let rows = if q { 5_000 } else { 50_000 };
    throughput_rate(
        "outbox-postgres",
        || on_own_runtime("raw", move || Box::pin(outbox::raw_relay(rows))),
        || on_own_runtime("jetwire", move || Box::pin(outbox::postgres_relay(rows))),
    );
    let sqlite: Vec<f64> = (0..runs())
        .map(|_| on_own_runtime("jetwire", move || Box::pin(outbox::sqlite_relay(rows))))
        .collect();
    println!("scenario=outbox-sqlite jetwire={:.1}rows/s", median(sqlite));
    let dur = Duration::from_secs(if q { 3 } else { 10 });
    let (mut p50, mut p99) = (vec![], vec![]);
    for _ in 0..runs() {
        let (a, b) = on_own_runtime("jetwire", move || Box::pin(outbox::latency(1000, dur)));
        p50.push(a);
        p99.push(b);
    }
    println!(
        "scenario=outbox-latency-1000rows/s p50={:.2}ms p99={:.2}ms",
        median(p50),
        median(p99)
    );
}

/// How long the checkpoint scenario's calls waited for their checkpoints.
#[allow(clippy::print_stdout)]
fn checkpoint_waits() {
    let mut waits = std::mem::take(
        &mut *setup::CHECKPOINT_WAITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    waits.sort_unstable();
    let at = |q: f64| {
        let i = (waits.len() as f64 * q) as usize;
        waits.get(i).copied().unwrap_or(0)
    };
    println!(
        "scenario=checkpoint-wait calls={} p50={}us p99={}us",
        waits.len(),
        at(0.5),
        at(0.99)
    );
}

/// Publishing against raw: one message at a time with an acked window,
/// and as one fast batch.
fn publish_scenarios(want: &dyn Fn(&str) -> bool, npub: u64) {
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
    if want("publish-fast") {
        // One `publish_fast` call against raw per-message publishing with
        // an acked window: messages without headers on both sides, then
        // with jetwire's headers on both.
        throughput(
            "publish-fast",
            || on_own_runtime("raw", move || Box::pin(publish("raw", npub))),
            || on_own_runtime("jetwire", move || Box::pin(publish_fast(npub, false))),
        );
        throughput(
            "publish-fast-same-headers",
            || on_own_runtime("raw", move || Box::pin(publish("raw-headers", npub))),
            || on_own_runtime("jetwire", move || Box::pin(publish_fast(npub, true))),
        );
    }
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
    observed::install();
    println!(
        "# jetwire-bench: nats-server at {}{}, concurrency {CONCURRENCY}, {} interleaved runs, medians; observing: {}",
        server().url(),
        if setup::clustered() {
            " (the first of a 3-node cluster; streams R3)"
        } else {
            ""
        },
        runs(),
        observed::describe()
    );

    for (name, kind, count, size) in [
        ("events", Kind::Events, n, 128),
        ("queue", Kind::Queue, n, 128),
        ("queue-once", Kind::QueueOnce, n / 4, 128),
        ("events-4k", Kind::Events, n4k, 4096),
        ("queue-msgpack", Kind::MsgPack, n, 128),
        ("queue-protobuf", Kind::Protobuf, n, 128),
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
    if want("checkpoint") {
        // Without and with a checkpoint per call: what a checkpoint costs.
        jetwire_against("checkpoint", Kind::Queue, Kind::Checkpoint, n / 4);
        checkpoint_waits();
    }
    if want("middleware") {
        // Without and with one middleware that only calls `next`.
        jetwire_against("middleware", Kind::Queue, Kind::Middleware, n / 2);
    }
    if want("partitioned") {
        // Unpartitioned, and in 16 partitions with 64 keys.
        jetwire_against("partitioned", Kind::Queue, Kind::Partitioned, n / 4);
    }
    if want("span-cost") {
        // Feature `otel`: one span's cost on its own, no server involved.
        for (ratio, layered, direct) in observed::span_costs(200_000) {
            let name = format!("span-cost-sampled-{}pct", ratio * 100.0);
            line(&name, layered, direct, "ns");
        }
    }
    if want("latency") {
        latencies(q);
    }
    publish_scenarios(&want, npub);
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
    if want("outbox") {
        outbox_scenarios(q);
    }
    if want("dlq-ls") {
        let n = if q { 20_000 } else { 100_000 };
        let (secs, mib) = on_own_runtime("jetwire", move || Box::pin(dlq::dlq_ls(n)));
        println!("scenario=dlq-ls-{n} jetwire_dlq_ls_limit_20={secs:.3}s peak_rss={mib:.1}MiB");
    }
    growth(&want, n);
    if only.contains(&"soak") {
        // Only when named: ten minutes. `SOAK_RATE`, `SOAK_SECS` change it.
        let env = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        soak::soak(
            env("SOAK_RATE", 100_000),
            Duration::from_secs(env("SOAK_SECS", 600)),
        );
    }
}

/// Publish-to-handle latency at 5k, 20k and 50k msg/s: p50, p99 and
/// p99.9 of each side, interleaved.
fn latencies(quick: bool) {
    // `RATES=5000,20000` runs only those.
    let only: Vec<u64> = std::env::var("RATES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    for (rate, secs) in [(5_000, 20), (20_000, 10), (50_000, 10)] {
        if !only.is_empty() && !only.contains(&rate) {
            continue;
        }
        let dur = Duration::from_secs(if quick { 3 } else { secs });
        let (r, j) = interleave(
            || on_own_runtime("raw", move || Box::pin(latency("raw", rate, dur))),
            || on_own_runtime("jetwire", move || Box::pin(latency("jetwire", rate, dur))),
        );
        let k = rate / 1000;
        for (i, p) in ["p50", "p99", "p99.9", "client-busy", "server-busy"]
            .iter()
            .enumerate()
        {
            let name = format!("latency-{k}k-{p}");
            let unit = if i < 3 { "us" } else { "%" };
            line(
                &name,
                median_of(&r, |x| x[i]),
                median_of(&j, |x| x[i]),
                unit,
            );
        }
    }
}

/// How the cost grows with handlers: many at once, and startup.
fn growth(want: &dyn Fn(&str) -> bool, n: u64) {
    if want("many-handlers") {
        // One app of 200 handlers: one busy (the `raw=` side of the line)
        // against 20 busy at once, the same messages in all.
        let count = 2 * n;
        throughput(
            "many-handlers",
            || on_own_runtime("jetwire", move || Box::pin(many_handlers(1, count))),
            || on_own_runtime("jetwire", move || Box::pin(many_handlers(20, count))),
        );
    }
    if want("fan-out") {
        // One app consuming an event stream (the `raw=` side of the line)
        // against 10 apps consuming it each, in one process: rates and CPU
        // per delivered message.
        let side = |apps: usize| {
            move || {
                let prefix = loaded("jetwire", Kind::Events, n / 4, 128);
                on_own_runtime("jetwire", move || Box::pin(fan_out(apps, n / 4, prefix)))
            }
        };
        throughput("fan-out-10-apps", side(1), side(10));
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
