//! `partitions = 16` with three replicas, each its own process: 50 keys ×
//! 200 jobs published with `PublishOptions::key`, every 50th job of a key
//! failing its first run; one replica killed with SIGKILL a quarter of the
//! way through, or frozen past `ack_wait`, or the server restarted. Every
//! job is done, each key's jobs in publish order (a job the killed replica
//! finished but had not acked is done again, right after itself), each
//! failing job retried before any later job of its key, and the
//! partitions were spread over the replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jetwire::PublishOptions;
use jetwire::publish::Message;
use jetwire_tests::{
    WorkerProcess, config, drain_replicas, replicas, shared_server, unique_prefix,
};

const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");
const KEYS: u32 = 50;
const PER_KEY: u32 = 200;

fn config_for(prefix: &str) -> jetwire::Config {
    config(shared_server(), prefix, "parts")
}

/// A finished job: key, n, when (µs), replica, partition subject, which run.
#[derive(Debug, Clone)]
struct Done {
    key: String,
    n: u32,
    at: u128,
    replica: usize,
    subject: String,
    attempt: u32,
}

fn parse(replica: usize, line: &str) -> Option<Done> {
    let mut parts = line.split(' ');
    if parts.next()? != "DONE" {
        return None;
    }
    Some(Done {
        key: parts.next()?.to_owned(),
        n: parts.next()?.parse().ok()?,
        at: parts.next()?.parse().ok()?,
        replica,
        subject: parts.next()?.to_owned(),
        attempt: parts.next()?.parse().ok()?,
    })
}

/// The jobs that fail their first run (n = 7, 57, ..): how many there
/// are, and how many were first done on their second run exactly (the
/// rest on a later one: a run lost with a killed or frozen replica).
/// Panics if one was done on its first run.
fn retried_jobs(done: &[Done]) -> (usize, usize) {
    let mut first: BTreeMap<(&str, u32), &Done> = BTreeMap::new();
    for d in done.iter().filter(|d| d.n % 50 == 7) {
        let seen = first.entry((&d.key, d.n)).or_insert(d);
        if d.at < seen.at {
            *seen = d;
        }
    }
    for ((key, n), d) in &first {
        assert!(
            d.attempt >= 2,
            "job {key} {n} failed its first run, yet was done on run {}",
            d.attempt
        );
    }
    let second = first.values().filter(|d| d.attempt == 2).count();
    (first.len(), second)
}

/// `PER_KEY` jobs of each of `KEYS` keys, round-robin over the keys so
/// every partition has work throughout.
async fn publish_all(publisher: &jetwire::Publisher) {
    let mut pending = Vec::new();
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            let job = serde_json::json!({ "key": format!("k{k}"), "n": n });
            let options = PublishOptions::new().key(format!("k{k}"));
            let msg = Message::json("queue.parts", &job, options).expect("valid");
            pending.push(publisher.send_message(msg).await.expect("sent"));
        }
        // The client holds a bounded number of acks in flight.
        for receipt in pending.drain(..) {
            receipt.await.expect("stored");
        }
    }
}

/// How many keys' jobs were not done in publish order: 0, 1, .. 199, a
/// job done twice only right after itself. Each key keeps one partition.
#[allow(clippy::print_stdout)]
fn keys_out_of_order(done: &[Done]) -> usize {
    let mut by_key: BTreeMap<&str, Vec<&Done>> = BTreeMap::new();
    for d in done {
        by_key.entry(&d.key).or_default().push(d);
    }
    let mut out_of_order = 0;
    for (key, jobs) in &mut by_key {
        jobs.sort_by_key(|d| d.at);
        let mut seq: Vec<u32> = jobs.iter().map(|d| d.n).collect();
        seq.dedup();
        if seq != (0..PER_KEY).collect::<Vec<_>>() {
            out_of_order += 1;
            let at = seq.iter().zip(0..).position(|(n, i)| *n != i).unwrap_or(0);
            let around: Vec<(u32, usize)> = jobs
                .iter()
                .skip(at.saturating_sub(3))
                .take(10)
                .map(|d| (d.n, d.replica))
                .collect();
            println!("key {key} out of order from job {at}: (job, replica) {around:?}");
        }
        let subjects: BTreeSet<&str> = jobs.iter().map(|d| d.subject.as_str()).collect();
        assert_eq!(subjects.len(), 1, "key {key} read from {subjects:?}");
    }
    out_of_order
}

/// A run of the partitioned worker: its replicas in their own processes,
/// every job published, and what they finished so far.
struct Run {
    replicas: Vec<Option<WorkerProcess>>,
    done: Vec<Done>,
    deadline: Instant,
}

/// What a run lost, repeated and put out of order.
struct Figures {
    lost: usize,
    repeated: usize,
    out_of_order: usize,
    /// The jobs failing their first run, and how many were first done on
    /// their second.
    retried: (usize, usize),
}

impl Run {
    /// `count` replicas against `url`, every job published by `publisher`.
    async fn start(url: &str, prefix: &str, count: usize, publisher: &jetwire::Publisher) -> Run {
        let env = [("JETWIRE_WORKER_TTL", "2s")];
        let replicas = replicas(WORKER, url, prefix, "partitioned", &env, count);
        publish_all(publisher).await;
        Run {
            replicas,
            done: Vec::new(),
            deadline: Instant::now() + Duration::from_secs(90),
        }
    }

    /// Three replicas on the shared server, a quarter of the jobs done.
    async fn three_replicas_a_quarter_through(name: &str) -> Run {
        let prefix = unique_prefix(name);
        let publisher = jetwire::Publisher::connect(&config_for(&prefix))
            .await
            .expect("connects");
        let mut run = Run::start(&shared_server().url(), &prefix, 3, &publisher).await;
        run.until_a_quarter().await;
        run
    }

    fn total() -> usize {
        (KEYS * PER_KEY) as usize
    }

    fn collect(&mut self) {
        let lines = drain_replicas(&self.replicas);
        self.done
            .extend(lines.iter().filter_map(|(i, l)| parse(*i, l)));
    }

    fn unique(&self) -> usize {
        self.done
            .iter()
            .map(|d| (d.key.clone(), d.n))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Collects until a quarter of the jobs are done.
    async fn until_a_quarter(&mut self) {
        while self.done.len() < Run::total() / 4 && Instant::now() < self.deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.collect();
        }
    }

    /// Collects until every job is done, or the deadline.
    async fn until_all(&mut self) {
        while self.unique() < Run::total() && Instant::now() < self.deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.collect();
        }
    }

    /// The replica that has done the most.
    fn busiest(&self) -> usize {
        (0..self.replicas.len())
            .max_by_key(|i| self.done.iter().filter(|d| d.replica == *i).count())
            .expect("replicas")
    }

    fn figures(&self) -> Figures {
        Figures {
            lost: Run::total() - self.unique(),
            repeated: self.done.len() - self.unique(),
            out_of_order: keys_out_of_order(&self.done),
            retried: retried_jobs(&self.done),
        }
    }
}

impl Figures {
    /// Asserts none lost and none out of order.
    fn exact(&self) {
        assert_eq!(self.lost, 0, "jobs lost");
        assert_eq!(self.out_of_order, 0, "keys out of order");
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (retried, on_second) = self.retried;
        write!(
            f,
            "lost {}, out of order {} keys, done twice {}, {retried} jobs failing once done on their second run {on_second}",
            self.lost, self.out_of_order, self.repeated
        )
    }
}

#[tokio::test]
#[allow(clippy::print_stdout)]
async fn keys_keep_their_order_over_three_replicas_and_a_kill() {
    let mut run = Run::three_replicas_a_quarter_through("parts").await;
    // The replica that has done the most is killed mid-run.
    let busiest = run.busiest();
    let killed_at = Instant::now();
    let killed_at_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let rest = run.replicas[busiest].take().expect("running").kill9();
    run.done
        .extend(rest.iter().filter_map(|l| parse(busiest, l)));
    let done_at_kill = run.done.len();
    run.until_all().await;
    let finished_after = killed_at.elapsed();
    let done = &run.done;
    // The partitions the killed replica read last, and when another took
    // the first of them up.
    let held: BTreeSet<&str> = done
        .iter()
        .filter(|d| d.replica == busiest && d.at + 300_000 >= killed_at_us)
        .map(|d| d.subject.as_str())
        .collect();
    let taken_over = done
        .iter()
        .filter(|d| {
            d.replica != busiest && d.at > killed_at_us && held.contains(d.subject.as_str())
        })
        .map(|d| Duration::from_micros((d.at - killed_at_us) as u64))
        .min()
        .expect("another replica read the killed one's partitions");
    let figures = run.figures();
    let mut spread: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for d in done.iter().take(done_at_kill) {
        spread.entry(d.replica).or_default().insert(&d.subject);
    }
    let spread: Vec<(usize, usize)> = spread.iter().map(|(r, p)| (*r, p.len())).collect();
    println!(
        "partitions: {} jobs, {KEYS} keys, 16 partitions, 3 replicas, one killed after {done_at_kill} done: {figures}, its {} partitions read again after {taken_over:?}, all done {finished_after:?} after the kill (worker TTL 2s, ack_wait 2s); partitions read per replica before the kill {spread:?}",
        Run::total(),
        held.len()
    );
    figures.exact();
    assert_eq!(spread.len(), 3, "every replica read partitions: {spread:?}");
    assert!(taken_over < Duration::from_secs(10), "{taken_over:?}");
    // A partition has one message unacked at a time (`max_ack_pending =
    // 1`), and a job done but not yet acked when the kill came was done in
    // its last 300 ms: so at most one job per partition it read then.
    assert!(
        figures.repeated <= held.len(),
        "only the killed replica's unacked jobs come twice, one per partition it held: {} for {} partitions",
        figures.repeated,
        held.len()
    );
}

/// The same run, with the busiest replica frozen (SIGSTOP) for 5 s, past
/// `ack_wait` and the worker TTL (2 s each), a quarter of the way
/// through, then thawed: its partitions are read by others meanwhile, and
/// when it wakes no key's jobs go out of order and none is lost.
#[tokio::test]
#[allow(clippy::print_stdout)]
async fn keys_keep_their_order_when_a_replica_is_frozen_and_thawed() {
    let mut run = Run::three_replicas_a_quarter_through("partsfrozen").await;
    let busiest = run.busiest();
    run.replicas[busiest].as_ref().expect("running").pause();
    let at_freeze = run.done.len();
    // The fault itself: frozen for longer than ack_wait and the TTL.
    let thaw = Instant::now() + Duration::from_secs(5);
    while Instant::now() < thaw {
        tokio::time::sleep(Duration::from_millis(20)).await;
        run.collect();
    }
    let while_frozen = run.done.len() - at_freeze;
    run.replicas[busiest].as_ref().expect("running").resume();
    run.until_all().await;
    let figures = run.figures();
    println!(
        "partitions: {} jobs, one of 3 replicas frozen 5 s after {at_freeze} done: {while_frozen} done by the others meanwhile; {figures}",
        Run::total()
    );
    figures.exact();
    assert!(
        while_frozen > 0,
        "the others read its partitions while it was frozen"
    );
}

/// The same run on a server of its own, restarted a quarter of the way
/// through: the replicas reconnect and no key's jobs go out of order.
#[tokio::test]
#[allow(clippy::print_stdout)]
async fn keys_keep_their_order_through_a_server_restart() {
    let prefix = unique_prefix("partsrestart");
    let mut server = jetwire_tests::Server::start();
    let publisher = jetwire::Publisher::connect(&config(&server, &prefix, "parts"))
        .await
        .expect("connects");
    let mut run = Run::start(&server.url(), &prefix, 2, &publisher).await;
    run.until_a_quarter().await;
    let at_restart = run.done.len();
    server.restart();
    run.until_all().await;
    let figures = run.figures();
    println!(
        "partitions: {} jobs, 2 replicas, the server restarted after {at_restart} done: {figures}",
        Run::total()
    );
    figures.exact();
}
