//! The soak: a work queue fed at a fixed rate for minutes, with retries and
//! dead letters mixed in; each minute's RSS, open file descriptors and
//! publish-to-handle latency, to show what stays flat.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use jetwire::{App, Context, HandlerError, queue};

use crate::rss::rss_mib;
use crate::setup::{
    AckWindow, Msg, config, fresh_prefix, now_ns, on_own_runtime, publish_paced, server,
};

/// Latency buckets of 10 µs, up to 100 ms (the last holds the rest).
const BUCKETS: usize = 10_000;
static HISTOGRAM: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HANDLED: AtomicU64 = AtomicU64::new(0);

/// Every 50th job fails its first run (retried 10 ms later); every 500th
/// fails for good (dead-lettered). The latency is that of the other jobs,
/// done at their first call.
#[queue(
    "queue.bench-soak",
    concurrency = 64,
    max_deliver = 3,
    backoff = ["10ms"]
)]
pub(crate) async fn bench_soak(m: Msg, ctx: Context) -> Result<(), HandlerError> {
    if m.id % 500 == 7 {
        HANDLED.fetch_add(1, Ordering::Relaxed);
        return Err(HandlerError::permanent("soak: a job that never succeeds"));
    }
    match (m.id.is_multiple_of(50), ctx.attempt()) {
        (true, 1) => return Err(HandlerError::transient("soak: its first run fails")),
        (true, _) => {
            HANDLED.fetch_add(1, Ordering::Relaxed);
        }
        (false, _) => done(&m),
    };
    Ok(())
}

fn done(m: &Msg) {
    let bucket = (now_ns().saturating_sub(m.sent_ns) / 10_000) as usize;
    let mut h = HISTOGRAM.lock().unwrap_or_else(|e| e.into_inner());
    if h.is_empty() {
        h.resize(BUCKETS, 0);
    }
    h[bucket.min(BUCKETS - 1)] += 1;
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// One minute's figures.
struct Minute {
    rss_mib: f64,
    fds: usize,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    handled: u64,
    dead: u64,
}

/// The histogram's percentiles since the last call, in µs; cleared.
fn take_percentiles() -> (f64, f64, f64) {
    let mut h = HISTOGRAM.lock().unwrap_or_else(|e| e.into_inner());
    let total: u64 = h.iter().map(|&c| u64::from(c)).sum();
    let pct = |p: f64| {
        let want = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (i, &c) in h.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want.max(1) {
                return (i as f64 + 1.0) * 10.0;
            }
        }
        f64::NAN
    };
    let out = (pct(0.50), pct(0.99), pct(0.999));
    h.iter_mut().for_each(|c| *c = 0);
    out
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Feeds the soak's queue at `rate` for `dur` from a thread of its own,
/// while the app consumes on another; prints each minute, then the first
/// against the last.
#[allow(clippy::print_stdout)]
pub(crate) fn soak(rate: u64, dur: Duration) {
    let prefix = fresh_prefix("soak");
    let p = prefix.clone();
    let app_thread = std::thread::Builder::new()
        .name("jetwire".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = App::new(config(&p))
                    .only(&["bench_soak"])
                    .start()
                    .await
                    .expect("start");
                // Runs until the feeder is through.
                while !FED.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                app.shutdown().await.expect("shutdown");
            });
        })
        .expect("the app's thread");
    let minutes = on_own_runtime("load", move || Box::pin(feed(prefix, rate, dur)));
    app_thread.join().expect("the app's thread");
    for (i, m) in minutes.iter().enumerate() {
        println!(
            "scenario=soak minute={} rss={:.1}MiB fds={} p50={:.0}us p99={:.0}us p99.9={:.0}us handled={} dead_letters={}",
            i + 1,
            m.rss_mib,
            m.fds,
            m.p50_us,
            m.p99_us,
            m.p999_us,
            m.handled,
            m.dead
        );
    }
    if let (Some(first), Some(last)) = (minutes.first(), minutes.last()) {
        for (what, a, b) in [
            ("rss", first.rss_mib, last.rss_mib),
            ("fds", first.fds as f64, last.fds as f64),
            ("p99", first.p99_us, last.p99_us),
        ] {
            println!(
                "scenario=soak-{what} first={a:.1} last={b:.1} ratio={:.3}",
                b / a
            );
        }
    }
}

static FED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Publishes at `rate` until `dur` has passed, sampling each minute.
async fn feed(prefix: String, rate: u64, dur: Duration) -> Vec<Minute> {
    let client = async_nats::connect(server().url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let dlq = jetwire::topology::dlq_stream(Some(&prefix));
    while js.get_stream(&queue).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subject = format!("{prefix}.queue.bench-soak");
    let mut minutes = Vec::new();
    let t0 = tokio::time::Instant::now();
    let mut next_minute = t0 + Duration::from_secs(60);
    let mut acks = AckWindow::new();
    let (mut handled_before, mut dead_before) = (0, 0);
    let total = rate * dur.as_secs();
    for id in 0..total {
        publish_paced(&js, &subject, (t0, rate, id), &mut acks).await;
        if tokio::time::Instant::now() >= next_minute {
            next_minute += Duration::from_secs(60);
            let (p50_us, p99_us, p999_us) = take_percentiles();
            let handled = HANDLED.load(Ordering::Relaxed);
            let dead = match js.get_stream(&dlq).await {
                Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
                Err(_) => 0,
            };
            minutes.push(Minute {
                rss_mib: rss_mib(),
                fds: open_fds(),
                p50_us,
                p99_us,
                p999_us,
                handled: handled - handled_before,
                dead: dead - dead_before,
            });
            (handled_before, dead_before) = (handled, dead);
        }
    }
    acks.drain().await;
    FED.store(true, Ordering::Relaxed);
    minutes
}
