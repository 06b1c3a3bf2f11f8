//! What an operator sees, scraped over real HTTP from a running app:
//! `/metrics` counts every outcome per handler exactly, the lag gauges
//! follow a backlog, and `/readyz` follows the app from starting through a
//! server outage to draining while `/healthz` stays 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jetwire::{App, Config, Context, HandlerError, State, queue};
use jetwire_tests::scrape::{get, metrics, sample, settled, total};
use jetwire_tests::{Server, dlq_stream, eventually, free_port, shared_server, unique_prefix};
use tokio::sync::Semaphore;

#[queue("queue.obsok")]
async fn obs_ok(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.obsretry", backoff = ["10ms"], max_deliver = 3)]
async fn obs_retry(_n: u64, ctx: Context) -> Result<(), HandlerError> {
    if ctx.attempt() == 1 {
        return Err(HandlerError::transient("first attempt fails"));
    }
    Ok(())
}

#[queue("queue.obsdead", max_deliver = 3)]
async fn obs_dead(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("never"))
}

/// Calls wait for a permit: none, and a backlog builds.
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

#[queue("queue.obsslow", concurrency = 2)]
async fn obs_slow(_n: u64, gate: State<Gate>) -> Result<(), HandlerError> {
    gate.0.0.acquire().await.expect("open").forget();
    Ok(())
}

#[queue("queue.obsready")]
async fn obs_ready(_n: u64, gate: State<Gate>) -> Result<(), HandlerError> {
    gate.0.0.acquire().await.expect("open").forget();
    Ok(())
}

fn config(url: &str, prefix: &str, http: SocketAddr) -> Config {
    Config::builder()
        .url(url)
        .app("obs")
        .subject_prefix(prefix)
        .http_addr(http)
        .metrics_interval(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("valid")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn metrics_count_every_outcome_per_handler() {
    let prefix = unique_prefix("obsm");
    let running = App::new(config(&shared_server().url(), &prefix, loopback()))
        .only(&["obs_ok", "obs_retry", "obs_dead"])
        .start()
        .await
        .expect("starts");
    let addr = running.http_addr().expect("listening");
    let publisher = running.publisher();
    let mut published = std::collections::HashMap::<String, u64>::new();
    for (subject, n) in [
        ("queue.obsok", 5),
        ("queue.obsretry", 3),
        ("queue.obsdead", 2),
    ] {
        for i in 0..n {
            let receipt = publisher.publish(subject, &i).await.expect("publish");
            *published.entry(receipt.stream).or_default() += 1;
        }
    }
    let text = eventually(Duration::from_secs(20), "every message settled", || async {
        let text = metrics(addr).await;
        let done = settled(&text, "obs_ok", "ack") == Some(5.0)
            && settled(&text, "obs_retry", "ack") == Some(3.0)
            && settled(&text, "obs_dead", "dead_letter") == Some(2.0);
        done.then_some(text)
    })
    .await;
    let received = |h: &str| sample(&text, "jetwire_messages_received_total", &[("handler", h)]);
    assert_eq!(received("obs_ok"), Some(5.0));
    assert_eq!(received("obs_retry"), Some(6.0), "3 failures and 3 retries");
    assert_eq!(received("obs_dead"), Some(2.0));
    assert_eq!(settled(&text, "obs_retry", "nak"), Some(3.0));
    assert_eq!(settled(&text, "obs_ok", "nak").unwrap_or(0.0), 0.0);
    assert_eq!(settled(&text, "obs_dead", "ack").unwrap_or(0.0), 0.0);
    assert_eq!(
        sample(
            &text,
            "jetwire_dead_letters_total",
            &[("handler", "obs_dead"), ("reason", "permanent")]
        ),
        Some(2.0)
    );
    // One observation per call.
    let calls = |h: &str| {
        sample(
            &text,
            "jetwire_handler_duration_seconds_count",
            &[("handler", h)],
        )
    };
    assert_eq!(calls("obs_ok"), Some(5.0));
    assert_eq!(calls("obs_retry"), Some(6.0));
    assert_eq!(calls("obs_dead"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "jetwire_handlers_in_flight",
            &[("handler", "obs_ok")]
        ),
        Some(0.0)
    );
    // Each publish counted under the stream that stored it, and each letter
    // under the dead-letter stream.
    for (stream, n) in &published {
        assert_eq!(
            sample(&text, "jetwire_published_total", &[("stream", stream)]),
            Some(*n as f64),
            "{stream}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "jetwire_published_total",
            &[("stream", &dlq_stream(&prefix))]
        ),
        Some(2.0)
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn lag_gauges_follow_a_backlog() {
    let prefix = unique_prefix("obsl");
    let gate = Gate(Arc::new(Semaphore::new(0)));
    let running = App::new(config(&shared_server().url(), &prefix, loopback()))
        .only(&["obs_slow"])
        .state(gate.clone())
        .start()
        .await
        .expect("starts");
    let addr = running.http_addr().expect("listening");
    let publisher = running.publisher();
    // More than the loop may hold (its places plus a batch in flight).
    const BACKLOG: u64 = 200;
    for i in 0..BACKLOG {
        publisher
            .publish("queue.obsslow", &i)
            .await
            .expect("publish");
    }
    let lag = |text: &str| {
        let h = [("handler", "obs_slow")];
        (
            total(text, "jetwire_consumer_pending", &h),
            total(text, "jetwire_consumer_ack_pending", &h),
        )
    };
    // Nothing is acked while the gate is shut: the backlog is all there,
    // part waiting at the server, part delivered and not yet acked.
    let (pending, ack_pending) =
        eventually(Duration::from_secs(20), "the backlog seen", || async {
            let (p, a) = lag(&metrics(addr).await);
            (p + a == BACKLOG as f64 && a > 0.0).then_some((p, a))
        })
        .await;
    assert!(
        pending > 0.0,
        "the loop holds a bounded part: {ack_pending} delivered"
    );
    assert_eq!(
        sample(
            &metrics(addr).await,
            "jetwire_handlers_in_flight",
            &[("handler", "obs_slow")]
        ),
        Some(2.0),
        "concurrency 2"
    );
    gate.0.add_permits(BACKLOG as usize);
    eventually(Duration::from_secs(20), "the backlog gone", || async {
        (lag(&metrics(addr).await) == (0.0, 0.0)).then_some(())
    })
    .await;
    running.shutdown().await.expect("clean shutdown");
}

async fn readyz(addr: SocketAddr) -> Option<(u16, serde_json::Value)> {
    let (status, body) = get(addr, "/readyz").await?;
    Some((
        status,
        serde_json::from_str(&body).expect("/readyz answers JSON"),
    ))
}

async fn healthz_ok(addr: SocketAddr) {
    assert_eq!(get(addr, "/healthz").await.map(|(s, _)| s), Some(200));
}

/// Waits until `/readyz` answers `status` with a reason starting so.
async fn readyz_becomes(addr: SocketAddr, status: u16, reason: &str) -> serde_json::Value {
    eventually(
        Duration::from_secs(30),
        &format!("/readyz {status} {reason}"),
        || async {
            let (s, body) = readyz(addr).await?;
            let reasons = body["reasons"].as_array().cloned().unwrap_or_default();
            let said = reason.is_empty()
                || reasons
                    .iter()
                    .any(|r| r.as_str().is_some_and(|r| r.starts_with(reason)));
            (s == status && said).then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn readyz_follows_start_an_outage_and_draining() {
    let mut server = Server::start();
    let prefix = unique_prefix("obsr");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gate = Gate(Arc::new(Semaphore::new(0)));
    // A frozen server holds the connect: the listener already answers.
    server.pause();
    let app = App::new(config(&server.url(), &prefix, addr))
        .only(&["obs_ready"])
        .state(gate.clone());
    let starting = tokio::spawn(app.start());
    let body = readyz_becomes(addr, 503, "starting").await;
    assert_eq!(body["ready"], false);
    healthz_ok(addr).await;
    server.resume();
    let running = starting.await.expect("joins").expect("starts");
    let body = readyz_becomes(addr, 200, "").await;
    assert_eq!(body["handlers"][0]["handler"], "obs_ready");
    assert_eq!(body["handlers"][0]["consuming"], true);
    assert!(running.health().ready);
    healthz_ok(addr).await;

    server.stop();
    let body = readyz_becomes(addr, 503, "connection").await;
    assert_eq!(body["connected"], false);
    assert!(!running.health().ready);
    healthz_ok(addr).await;
    server.restart();
    readyz_becomes(addr, 200, "").await;

    // A call in flight keeps the app draining until the gate opens.
    let publisher = running.publisher();
    publisher
        .publish("queue.obsready", &1u64)
        .await
        .expect("publish");
    eventually(Duration::from_secs(10), "the call in flight", || async {
        (running.stats()[0].received == 1).then_some(())
    })
    .await;
    let stopping = tokio::spawn(running.shutdown());
    let body = readyz_becomes(addr, 503, "draining").await;
    assert_eq!(body["draining"], true);
    healthz_ok(addr).await;
    gate.0.add_permits(1);
    stopping.await.expect("joins").expect("clean shutdown");
    // Gone with the app.
    assert!(get(addr, "/healthz").await.is_none());
}

#[tokio::test]
async fn a_busy_address_fails_start_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = App::new(config(&shared_server().url(), &unique_prefix("obsb"), addr))
        .only(&["obs_ok"])
        .start()
        .await
        .expect_err("the address is taken");
    let text = err.to_string();
    assert!(
        text.contains("JETWIRE_HTTP_ADDR") && text.contains(&addr.to_string()),
        "{text}"
    );
}

/// Reads from `stream` until the server closes it; how long that took,
/// or `None` if it stayed open past `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let t0 = tokio::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(within, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .ok()
    .map(|()| t0.elapsed())
}

/// Clients that never finish a request, that open more connections than
/// the listener serves, or send a huge header neither hold the listener
/// nor stop the app: half-open requests are closed within the header
/// timeout, connections past the limit at once, and the handlers keep
/// consuming throughout.
#[tokio::test]
#[allow(clippy::print_stdout)]
async fn slow_many_and_huge_clients_neither_hold_the_listener_nor_stop_the_app() {
    use tokio::io::AsyncWriteExt;
    let prefix = unique_prefix("obs-abuse");
    let running = App::new(config(shared_server().url().as_str(), &prefix, loopback()))
        .only(&["obs_ok"])
        .start()
        .await
        .expect("starts");
    let addr = running.http_addr().expect("listening");

    // A request that never ends its headers is closed.
    let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let took = closed_within(&mut half, Duration::from_secs(20))
        .await
        .expect("a half-open request is closed");
    println!("HTTP: a half-open request closed after {took:?}");

    // 300 connections that send nothing: past the limit each is closed at
    // once, the rest when the header timeout passes; the app consumes.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let mut closed_at_once = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_millis(20))
            .await
            .is_some()
        {
            closed_at_once += 1;
        }
    }
    println!("HTTP: of 300 idle connections, {closed_at_once} closed at once");
    assert!(
        closed_at_once >= 300 - 256,
        "{closed_at_once} closed at once"
    );
    for n in 0..20u64 {
        running
            .publisher()
            .publish("queue.obsok", &n)
            .await
            .expect("publish");
    }
    eventually(
        Duration::from_secs(20),
        "20 handled while the listener is full",
        || async {
            let handled = running.stats().iter().map(|s| s.acked).sum::<u64>();
            (handled >= 20).then_some(())
        },
    )
    .await;
    for stream in &mut idle {
        closed_within(stream, Duration::from_secs(20))
            .await
            .expect("an idle connection is closed");
    }
    drop(idle);

    // A 1 MB header is refused, and the listener still answers.
    let mut huge = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1 << 20));
    request.extend(b"\r\n\r\n");
    let _ = huge.write_all(&request).await;
    closed_within(&mut huge, Duration::from_secs(20))
        .await
        .expect("a huge header is refused");
    eventually(Duration::from_secs(10), "/healthz answers", || async {
        get(addr, "/healthz").await.filter(|(s, _)| *s == 200)
    })
    .await;
    running.shutdown().await.expect("shutdown");
}

/// The CPU time a process has used so far (user and system).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("its stat");
    // Fields after the command's closing parenthesis: utime and stime are
    // the 12th and 13th, in clock ticks (100 a second on Linux).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("ticks"))
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// Asks for `/metrics` over one keep-alive connection until `until`; how
/// many answers came.
async fn scrape_until(addr: SocketAddr, until: std::time::Instant) -> u64 {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut stream = BufReader::new(stream);
    let mut answers = 0;
    while std::time::Instant::now() < until {
        if stream
            .get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            break;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return answers;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            break;
        }
        answers += 1;
    }
    answers
}

/// The listener of an app in its own process, whose file limit is then
/// set to 128: under 5,000 half-open connections the app handles 50 jobs
/// (past what it can accept or holds, each is refused or closed at
/// once); then `/metrics` is asked as
/// fast as 16 keep-alive clients can for 3 s, and the process's CPU per
/// answer is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn five_thousand_half_open_connections_and_a_metrics_flood_leave_the_app_working() {
    use tokio::io::AsyncWriteExt;
    let prefix = unique_prefix("obs-flood");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let worker = jetwire_tests::WorkerProcess::spawn(
        env!("CARGO_BIN_EXE_jetwire-test-worker"),
        &shared_server().url(),
        &prefix,
        "slow",
        &[("JETWIRE_HTTP_ADDR", addr.to_string().as_str())],
    );
    eventually(Duration::from_secs(20), "the worker ready", || async {
        get(addr, "/readyz").await.filter(|(s, _)| *s == 200)
    })
    .await;
    let publisher =
        jetwire::Publisher::connect(&jetwire_tests::config(shared_server(), &prefix, "flood"))
            .await
            .expect("connect");
    // A low file limit: most connections fail to be accepted (EMFILE),
    // which the listener backs off from instead of spinning.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &worker.pid().to_string(), "--nofile=128:128"])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(limited.success(), "prlimit");
    let (held_from, held_at) = (cpu_of(worker.pid()), std::time::Instant::now());
    // All at once; those the kernel's backlog no longer takes are not
    // waited for past a second.
    let connects = (0..5000).map(|_| async move {
        let connect = tokio::net::TcpStream::connect(addr);
        let mut s = tokio::time::timeout(Duration::from_secs(1), connect)
            .await
            .ok()?
            .ok()?;
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        Some(s)
    });
    let half_open: Vec<_> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .flatten()
        .collect();
    let unconnected = 5000 - half_open.len();
    for n in 0..50u64 {
        publisher
            .publish("queue.slowterm", &n)
            .await
            .expect("publish");
    }
    let done = (0..50)
        .filter(|_| {
            worker
                .expect_line(|l| l.starts_with("DONE "))
                .starts_with("DONE ")
        })
        .count();
    let held = (cpu_of(worker.pid()) - held_from, held_at.elapsed());
    drop(half_open);
    eventually(
        Duration::from_secs(20),
        "/healthz answers again",
        || async { get(addr, "/healthz").await.filter(|(s, _)| *s == 200) },
    )
    .await;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let before = cpu_of(worker.pid());
    let clients = (0..16).map(|_| tokio::spawn(scrape_until(addr, until)));
    let mut answers = 0;
    for c in clients {
        answers += c.await.expect("client");
    }
    let used = cpu_of(worker.pid()) - before;
    println!(
        "HTTP: 5,000 half-open connections ({unconnected} not taken by the kernel's backlog) at a file limit of 128: the app used {:?} of CPU in {:?} and did {done} of 50 jobs; then {answers} /metrics answers in 3 s ({} a second) at {used:?} of its CPU ({} µs an answer)",
        held.0,
        held.1,
        answers / 3,
        used.as_micros() / u128::from(answers.max(1))
    );
    assert_eq!(done, 50);
    assert!(answers > 0, "the listener answered");
    drop(worker);
}
