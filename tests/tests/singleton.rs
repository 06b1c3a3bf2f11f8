//! `singleton = true` with three replicas, each its own process: never two
//! calls at once across them (their start and end times prove it), and
//! after the consuming one is killed with SIGKILL another takes over
//! within about `ack_wait` (2 s).

use std::time::{Duration, Instant};

use jetwire_tests::{WorkerProcess, drain_replicas, replicas, shared_server, unique_prefix};

const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");

/// `(start, end, replica)` of each call, from `START id t` and `END id t`.
fn calls(lines: &[(usize, String)]) -> Vec<(u128, u128, usize)> {
    let mut open = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (replica, line) in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        let (Some(kind), Some(id), Some(t)) = (parts.first(), parts.get(1), parts.get(2)) else {
            continue;
        };
        let t: u128 = t.parse().expect("a time");
        match *kind {
            "START" => {
                open.insert((*replica, id.to_string()), t);
            }
            "END" => {
                if let Some(start) = open.remove(&(*replica, id.to_string())) {
                    out.push((start, t, *replica));
                }
            }
            _ => {}
        }
    }
    out.sort();
    out
}

/// Calls of one replica may overlap (concurrency 4); calls of two never.
fn no_overlap_across_replicas(calls: &[(u128, u128, usize)]) {
    for (i, a) in calls.iter().enumerate() {
        for b in &calls[i + 1..] {
            assert!(
                a.2 == b.2 || a.1 <= b.0 || b.1 <= a.0,
                "two replicas at once: {a:?} and {b:?}"
            );
        }
    }
}

fn publisher_for(prefix: &str) -> jetwire::Config {
    jetwire::Config::builder()
        .url(shared_server().url())
        .subject_prefix(prefix)
        .build()
        .expect("valid")
}

#[tokio::test]
#[allow(clippy::print_stdout)]
async fn one_replica_at_a_time_and_another_takes_over_after_a_kill() {
    let prefix = unique_prefix("single");
    let url = shared_server().url();
    let mut replicas = replicas(WORKER, &url, &prefix, "singleton", &[], 3);
    let publisher = jetwire::Publisher::connect(&publisher_for(&prefix))
        .await
        .expect("connects");
    let mut lines: Vec<(usize, String)> = Vec::new();
    let collect = |replicas: &[Option<WorkerProcess>], lines: &mut Vec<(usize, String)>| {
        lines.extend(drain_replicas(replicas));
    };
    for id in 0..40u64 {
        publisher
            .publish("queue.single", &id)
            .await
            .expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(&lines).len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        collect(&replicas, &mut lines);
    }
    let before = calls(&lines);
    assert_eq!(before.len(), 40, "every job ran once before the kill");
    no_overlap_across_replicas(&before);
    let active = before.last().expect("calls").2;
    assert!(
        before.iter().all(|c| c.2 == active),
        "one replica ran every call while pinned: {before:?}"
    );

    // Kill the pinned replica; the next jobs go to another within about ack_wait.
    let killed_at = Instant::now();
    replicas[active].take().expect("running").kill9();
    for id in 100..110u64 {
        publisher
            .publish("queue.single", &id)
            .await
            .expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut took_over = None;
    while Instant::now() < deadline {
        collect(&replicas, &mut lines);
        let after: Vec<_> = calls(&lines)
            .into_iter()
            .filter(|c| c.2 != active)
            .collect();
        if took_over.is_none()
            && lines
                .iter()
                .any(|(r, l)| *r != active && l.starts_with("START 10"))
        {
            took_over = Some(killed_at.elapsed());
        }
        if calls(&lines).len() >= 50 && !after.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = took_over.expect("another replica took over");
    let all = calls(&lines);
    assert_eq!(all.len(), 50, "every job ran once");
    no_overlap_across_replicas(&all);
    println!("singleton: after SIGKILL another replica took over in {took_over:?} (ack_wait 2s)");
    assert!(took_over < Duration::from_secs(5), "{took_over:?}");
}

static FORGED_DONE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[jetwire::queue("queue.pinforged", singleton = true)]
async fn pin_forged(_n: u64) -> Result<(), jetwire::HandlerError> {
    FORGED_DONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// A publisher can store any `Nats-Pin-Id` it likes, and the server
/// appends its own on delivery: the loop keeps only the server's, and
/// sends it as JSON, so a forged `"` neither breaks the pull requests nor
/// stalls the singleton; nor does a letter's replay carry one.
#[tokio::test]
async fn a_forged_pin_header_neither_stops_nor_stalls_a_singleton() {
    use jetwire::async_nats::{HeaderMap, jetstream};
    let prefix = unique_prefix("pinforged");
    let running = jetwire::App::new(jetwire_tests::config(shared_server(), &prefix, "pins"))
        .only(&["pin_forged"])
        .start()
        .await
        .expect("starts");
    let js = jetstream::new(running.publisher().client().clone());
    let subject = format!("{prefix}.queue.pinforged");
    for forged in [
        "\"",
        "x\",\"batch\":100000,\"no_wait\":true",
        "stale0123456789",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Pin-Id", forged);
        js.publish_with_headers(subject.clone(), headers, "0".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    for n in 1..=20u64 {
        running
            .publisher()
            .publish("queue.pinforged", &n)
            .await
            .expect("publish");
    }
    // A stalled pin would hold them for ack_wait (30 s).
    jetwire_tests::eventually(Duration::from_secs(10), "all 23 jobs done", || async {
        (FORGED_DONE.load(std::sync::atomic::Ordering::SeqCst) == 23).then_some(())
    })
    .await;
    running.shutdown().await.expect("stops");
}

/// The pinned replica frozen (SIGSTOP) in the middle of a long call for
/// longer than `ack_wait`: the pin moves and another replica runs the
/// message; when the frozen one wakes, its call stops before another step,
/// so the two never both finish it, and nothing else overlaps.
#[tokio::test]
#[allow(clippy::print_stdout)]
async fn a_replica_frozen_past_ack_wait_stops_its_call_when_it_wakes() {
    let prefix = unique_prefix("singlestop");
    let url = shared_server().url();
    let replicas = replicas(WORKER, &url, &prefix, "singleton", &[], 2);
    let publisher = jetwire::Publisher::connect(&publisher_for(&prefix))
        .await
        .expect("connects");
    let mut lines: Vec<(usize, String)> = Vec::new();
    publisher
        .publish("queue.single", &1000u64)
        .await
        .expect("publish");
    let deadline = Instant::now() + Duration::from_secs(20);
    let frozen = loop {
        lines.extend(drain_replicas(&replicas));
        if let Some((r, _)) = lines.iter().find(|(_, l)| l.starts_with("START 1000 ")) {
            break *r;
        }
        assert!(Instant::now() < deadline, "the long job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let other = 1 - frozen;
    let paused_at = Instant::now();
    replicas[frozen].as_ref().expect("running").pause();
    // The other replica is pinned once the pin's time is up, and runs the
    // message once its ack_wait has passed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let taken_at = loop {
        lines.extend(drain_replicas(&replicas));
        if lines
            .iter()
            .any(|(r, l)| *r == other && l.starts_with("START 1000 "))
        {
            break paused_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no other replica took the message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    replicas[frozen].as_ref().expect("running").resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines
        .iter()
        .any(|(r, l)| *r == other && l.starts_with("END 1000 "))
    {
        assert!(
            Instant::now() < deadline,
            "the other replica never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        lines.extend(drain_replicas(&replicas));
    }
    // Give the woken replica its chance to (wrongly) finish too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    lines.extend(drain_replicas(&replicas));
    let ends: Vec<usize> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("END 1000 "))
        .map(|(r, _)| *r)
        .collect();
    println!(
        "singleton: frozen past ack_wait; the other replica took the call over {taken_at:?} after the freeze (ack_wait 2s)"
    );
    assert_eq!(
        ends,
        vec![other],
        "the frozen replica finished its stale call too: {lines:?}"
    );
    no_overlap_across_replicas(&calls(&lines));
}
