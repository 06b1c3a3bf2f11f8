//! `max_deliver = 1` with replicas in their own processes: 6,000 jobs,
//! each run marked begun before it starts; one replica killed with
//! SIGKILL, or frozen past `ack_wait`, a quarter of the way through, or
//! the server restarted. No job runs twice, none is lost (each is done or
//! dead-lettered), and only a job whose run may have begun is
//! dead-lettered, once. The restarted run does not hold (run it with
//! `--ignored`: it prints its figures).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jetwire_tests::{
    Server, WorkerProcess, config, drain_replicas, replicas, shared_server, stream_messages,
    unique_prefix,
};

const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");
/// One scenario at a time: each measures a fault, not the machine's load
/// from another's replicas.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const JOBS: u64 = 6_000;
/// The handler's `concurrency`: runs one replica may have begun at once.
const CONCURRENCY: usize = 16;

/// A run of the worker: its replicas, what they printed, and the letters.
struct Run {
    server_url: String,
    prefix: String,
    replicas: Vec<Option<WorkerProcess>>,
    /// Per job, the replicas that started it.
    started: BTreeMap<u64, Vec<usize>>,
    done: BTreeSet<u64>,
    lettered: Vec<u64>,
    deadline: Instant,
}

/// What a run lost, ran twice and dead-lettered.
#[derive(Debug)]
struct Figures {
    lost: usize,
    run_twice: usize,
    lettered: usize,
    lettered_twice: usize,
    lettered_never_started: usize,
}

impl Run {
    async fn start(server_url: &str, prefix: &str, count: usize) -> Run {
        let replicas = replicas(WORKER, server_url, prefix, "last-run", &[], count);
        let publisher = jetwire::Publisher::connect(&config_on(server_url, prefix))
            .await
            .expect("connects");
        let messages: Vec<jetwire::publish::Message> = (0..JOBS)
            .map(|id| {
                jetwire::publish::Message::json("queue.lastrun", &id, Default::default())
                    .expect("a message")
            })
            .collect();
        publisher.publish_batch(messages).await.expect("published");
        Run {
            server_url: server_url.to_owned(),
            prefix: prefix.to_owned(),
            replicas,
            started: BTreeMap::new(),
            done: BTreeSet::new(),
            lettered: Vec::new(),
            deadline: Instant::now() + Duration::from_secs(120),
        }
    }

    fn note(&mut self, replica: usize, line: &str) {
        let mut parts = line.split(' ');
        let (Some(what), Some(Ok(id))) = (parts.next(), parts.next().map(str::parse::<u64>)) else {
            return;
        };
        match what {
            "START" => self.started.entry(id).or_default().push(replica),
            "DONE" => {
                self.done.insert(id);
            }
            _ => {}
        }
    }

    fn collect(&mut self) {
        for (i, line) in drain_replicas(&self.replicas) {
            self.note(i, &line);
        }
    }

    /// Takes replica `i` away with SIGKILL, keeping what it printed.
    fn kill(&mut self, i: usize) {
        let rest = self.replicas[i].take().expect("running").kill9();
        for line in rest {
            self.note(i, &line);
        }
    }

    async fn read_letters(&mut self) {
        let client = async_nats::connect(self.server_url.as_str())
            .await
            .expect("connect");
        let dlq = jetwire_tests::dlq_stream(&self.prefix);
        self.lettered = stream_messages(&client, &dlq)
            .await
            .iter()
            .filter_map(|m| serde_json::from_slice::<u64>(&m.payload).ok())
            .collect();
    }

    async fn until_a_quarter(&mut self) {
        while self.done.len() < JOBS as usize / 4 && Instant::now() < self.deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.collect();
        }
    }

    /// Collects until every job is done or dead-lettered, or the deadline.
    async fn until_all(&mut self) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.collect();
            self.read_letters().await;
            let settled: BTreeSet<u64> = self.done.iter().chain(&self.lettered).copied().collect();
            if settled.len() as u64 >= JOBS || Instant::now() >= self.deadline {
                return;
            }
        }
    }

    /// The replica that has started the most.
    fn busiest(&self) -> usize {
        (0..self.replicas.len())
            .max_by_key(|i| self.started.values().filter(|r| r.contains(i)).count())
            .expect("replicas")
    }

    fn figures(&self) -> Figures {
        let lettered: BTreeSet<u64> = self.lettered.iter().copied().collect();
        let settled: BTreeSet<u64> = self.done.union(&lettered).copied().collect();
        Figures {
            lost: JOBS as usize - settled.len(),
            run_twice: self.started.values().filter(|r| r.len() > 1).count(),
            lettered: lettered.len(),
            lettered_twice: self.lettered.len() - lettered.len(),
            lettered_never_started: lettered
                .iter()
                .filter(|id| !self.started.contains_key(id))
                .count(),
        }
    }
}

impl Figures {
    /// None lost, none run twice, none lettered twice, and no more letters
    /// than runs the affected replicas may have had begun.
    fn exact(&self, affected: usize) {
        assert_eq!(self.lost, 0, "jobs lost: {self:?}");
        assert_eq!(self.run_twice, 0, "jobs run twice: {self:?}");
        assert_eq!(self.lettered_twice, 0, "jobs dead-lettered twice: {self:?}");
        assert!(
            self.lettered <= affected * CONCURRENCY,
            "more letters than runs begun where the fault struck: {self:?}"
        );
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lost {}, run twice {}, dead-lettered {} ({} never started, {} twice)",
            self.lost,
            self.run_twice,
            self.lettered,
            self.lettered_never_started,
            self.lettered_twice
        )
    }
}

fn config_on(url: &str, prefix: &str) -> jetwire::Config {
    let mut c = config(shared_server(), prefix, "lastrun");
    c.url = url.to_owned();
    c
}

#[tokio::test]
#[allow(clippy::print_stdout)]
async fn no_job_runs_twice_when_a_replica_is_killed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let prefix = unique_prefix("lastrunkill");
    let mut run = Run::start(&shared_server().url(), &prefix, 3).await;
    run.until_a_quarter().await;
    let busiest = run.busiest();
    let at_kill = run.done.len();
    run.kill(busiest);
    run.until_all().await;
    let figures = run.figures();
    println!("last runs: {JOBS} jobs, 3 replicas, one killed after {at_kill} done: {figures}");
    figures.exact(1);
}

#[tokio::test]
#[allow(clippy::print_stdout)]
async fn no_job_runs_twice_when_a_replica_is_frozen_past_ack_wait() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let prefix = unique_prefix("lastrunfrozen");
    let mut run = Run::start(&shared_server().url(), &prefix, 3).await;
    run.until_a_quarter().await;
    let busiest = run.busiest();
    run.replicas[busiest].as_ref().expect("running").pause();
    let at_freeze = run.done.len();
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
        "last runs: {JOBS} jobs, one of 3 replicas frozen 5 s (ack_wait 2 s) after {at_freeze} done, {while_frozen} done by the others meanwhile: {figures}"
    );
    figures.exact(1);
    assert!(while_frozen > 0, "the others went on while it was frozen");
}

#[tokio::test]
#[ignore = "measured: 700-800 of 6,000 jobs run twice: the server delivers again messages whose acks it confirmed just before it stopped"]
#[allow(clippy::print_stdout)]
async fn no_job_runs_twice_through_a_server_restart() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let prefix = unique_prefix("lastrunrestart");
    let mut server = Server::start();
    let mut run = Run::start(&server.url(), &prefix, 2).await;
    run.until_a_quarter().await;
    let at_restart = run.done.len();
    server.restart();
    run.until_all().await;
    let figures = run.figures();
    println!(
        "last runs: {JOBS} jobs, 2 replicas, the server restarted after {at_restart} done: {figures}"
    );
    figures.exact(2);
}
