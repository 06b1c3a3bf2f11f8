//! Acknowledgement control against a real nats-server: `ack = "first"`
//! runs a message at most once (a failure is dead-lettered with its
//! reason, never retried; a SIGKILL loses at most the calls in flight and
//! runs nothing twice), and `ctx.ack()` acknowledges within a call, after
//! which its result is only logged and counted. Each beside its `TestApp`
//! run.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, Context, DlqReason, HandlerError, State, queue};
use jetwire_tests::{
    WorkerProcess, config, dlq_stream, eventually, header, letters, shared_server, stream_messages,
    unique_prefix,
};

const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");

/// The runs each job id had.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<u64, u32>>>);

impl Runs {
    fn ran(&self, id: u64) {
        *self.0.lock().expect("not poisoned").entry(id).or_default() += 1;
    }

    fn of(&self, id: u64) -> u32 {
        self.0
            .lock()
            .expect("not poisoned")
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

/// Job 1 succeeds; 2 fails transiently, 3 for good, 4 panics.
#[queue("queue.ackfirst", ack = "first")]
async fn first(id: u64, runs: State<Runs>) -> Result<(), HandlerError> {
    runs.ran(id);
    match id {
        2 => Err(HandlerError::transient("try again later")),
        3 => Err(HandlerError::permanent("never")),
        4 => panic!("a bug"),
        _ => Ok(()),
    }
}

/// Acks itself, then: job 1 succeeds; 2 fails transiently, 3 for good.
#[queue("queue.ackself", max_deliver = 3, backoff = ["50ms"])]
async fn by_hand(id: u64, runs: State<Runs>, ctx: Context) -> Result<(), HandlerError> {
    runs.ran(id);
    ctx.ack().await?;
    ctx.ack().await?; // a second ack does nothing
    match id {
        2 => Err(HandlerError::transient("after the ack")),
        3 => Err(HandlerError::permanent("after the ack")),
        _ => Ok(()),
    }
}

/// The reasons of the letters wanted for `first`'s jobs.
fn first_letter(id: u64) -> Option<DlqReason> {
    match id {
        2 => Some(DlqReason::Exhausted),
        3 => Some(DlqReason::Permanent),
        4 => Some(DlqReason::Panic),
        _ => None,
    }
}

#[tokio::test]
async fn ack_first_runs_each_message_once_and_dead_letters_a_failure() {
    let prefix = unique_prefix("ackfirst");
    let runs = Runs::default();
    let app = App::new(config(shared_server(), &prefix, "acks"))
        .only(&["first"])
        .state(runs.clone())
        .start()
        .await
        .expect("app starts");
    for id in 1..=4u64 {
        app.publisher()
            .publish("queue.ackfirst", &id)
            .await
            .expect("published");
    }
    let client = app.publisher().client().clone();
    let letters = letters(&client, &prefix, 3).await;
    eventually(Duration::from_secs(10), "every job settled", || async {
        let s = &app.stats()[0];
        (s.acked + s.failed_after_ack == 4).then_some(())
    })
    .await;
    let stats = app.stats()[0].clone();
    app.shutdown().await.expect("clean shutdown");
    for id in 1..=4 {
        assert_eq!(runs.of(id), 1, "job {id} ran once");
        let letter = letters
            .iter()
            .find(|l| l.payload.as_ref() == id.to_string().as_bytes());
        let reason = letter.and_then(|l| header(l, "Jetwire-Dlq-Reason"));
        assert_eq!(reason, first_letter(id).map(DlqReason::as_str), "job {id}");
    }
    assert_eq!(
        (
            stats.received,
            stats.acked,
            stats.failed_after_ack,
            stats.retried
        ),
        (4, 1, 3, 0),
        "{stats:?}"
    );
    assert_eq!(stats.dead_lettered, 0, "counted as failed after the ack");
}

#[tokio::test]
async fn ack_first_in_test_app() {
    let runs = Runs::default();
    let app = TestApp::new().only(&["first"]).state(runs.clone());
    for id in 1..=4u64 {
        let report = app.publish("queue.ackfirst", &id).await;
        assert_eq!(report.attempts(), 1, "job {id}");
        assert_eq!(report.dlq_reason(), first_letter(id), "job {id}");
        assert_eq!(report.failed_after_ack(), id != 1, "job {id}");
        assert_eq!(runs.of(id), 1, "job {id}");
    }
    assert_eq!(app.dead_letters().len(), 3);
}

#[tokio::test]
async fn a_call_that_acks_itself_is_never_retried_or_dead_lettered() {
    let prefix = unique_prefix("ackself");
    let runs = Runs::default();
    let app = App::new(config(shared_server(), &prefix, "acks"))
        .only(&["by_hand"])
        .state(runs.clone())
        .start()
        .await
        .expect("app starts");
    for id in 1..=3u64 {
        app.publisher()
            .publish("queue.ackself", &id)
            .await
            .expect("published");
    }
    eventually(Duration::from_secs(10), "every job settled", || async {
        let s = &app.stats()[0];
        (s.acked + s.failed_after_ack == 3).then_some(())
    })
    .await;
    let client = app.publisher().client().clone();
    let stats = app.stats()[0].clone();
    let js = jetwire::async_nats::jetstream::new(client.clone());
    let mut consumer: jetwire::async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(
            &stats.durable,
            &jetwire::topology::queue_stream(Some(&prefix)),
        )
        .await
        .expect("the durable");
    let info = consumer.info().await.expect("consumer info").clone();
    app.shutdown().await.expect("clean shutdown");
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "nothing left"
    );
    assert_eq!(info.num_redelivered, 0, "nothing came twice");
    for id in 1..=3 {
        assert_eq!(runs.of(id), 1, "job {id} ran once");
    }
    assert_eq!(
        (stats.acked, stats.failed_after_ack, stats.retried),
        (1, 2, 0),
        "{stats:?}"
    );
    let letters = stream_messages(&client, &dlq_stream(&prefix)).await;
    assert!(
        letters.is_empty(),
        "no letter after an ack: {}",
        letters.len()
    );
}

#[tokio::test]
async fn a_call_that_acks_itself_in_test_app() {
    let runs = Runs::default();
    let app = TestApp::new().only(&["by_hand"]).state(runs.clone());
    for id in 1..=3u64 {
        let report = app.publish("queue.ackself", &id).await;
        assert_eq!(report.attempts(), 1, "job {id}");
        assert_eq!(report.dlq_reason(), None, "job {id}");
        assert_eq!(report.failed_after_ack(), id != 1, "job {id}");
    }
    assert!(app.dead_letters().is_empty());
}

/// The ids of `lines` starting with `word`, each as often as it came.
fn ids(lines: &[String], word: &str) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(word)?.trim().parse().ok())
        .collect()
}

#[tokio::test]
#[allow(clippy::print_stdout)] // the measured figures
async fn ack_first_under_sigkill_loses_at_most_the_calls_in_flight_and_runs_nothing_twice() {
    const JOBS: u64 = 600;
    const CONCURRENCY: usize = 16;
    let server = shared_server();
    let prefix = unique_prefix("atmost");
    let first = WorkerProcess::ready(WORKER, &server.url(), &prefix, "ack-first", &[]);
    let app = App::new(config(server, &prefix, "publisher"))
        .only(&[])
        .start()
        .await
        .expect("publisher starts");
    for id in 0..JOBS {
        app.publisher()
            .publish("queue.atmost", &id)
            .await
            .expect("published");
    }
    // Killed once it has finished 100 jobs, with more in flight.
    let read = std::cell::RefCell::new(Vec::new());
    first.expect_line(|line| {
        let mut read = read.borrow_mut();
        read.push(line.to_owned());
        read.iter().filter(|l| l.starts_with("DONE ")).count() >= 100
    });
    let mut lines = read.into_inner();
    lines.extend(first.kill9());
    let second = WorkerProcess::ready(WORKER, &server.url(), &prefix, "ack-first", &[]);
    let js = jetwire::async_nats::jetstream::new(app.publisher().client().clone());
    let stream = jetwire::topology::queue_stream(Some(&prefix));
    let durable = jetwire::topology::durable_for(
        Some(&prefix),
        "worker",
        jetwire::registry::Kind::Queue,
        "once_job",
        "queue.atmost",
        None,
    );
    eventually(Duration::from_secs(60), "the durable emptied", || async {
        let mut consumer: jetwire::async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream(&durable, &stream).await.ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    // A graceful stop waits for the calls in flight.
    let (_, rest) = second.terminate();
    lines.extend(rest);
    app.shutdown().await.expect("clean shutdown");

    let starts = ids(&lines, "START ");
    let started: BTreeSet<u64> = starts.iter().copied().collect();
    let done: BTreeSet<u64> = ids(&lines, "DONE ").into_iter().collect();
    let twice = starts.len() - started.len();
    let lost = started.difference(&done).count();
    let never = (0..JOBS).filter(|id| !started.contains(id)).count();
    // A job acked and killed before it printed is lost in flight too.
    println!(
        "ack = \"first\" under SIGKILL: {JOBS} jobs, {twice} run twice, {lost} started and lost, {never} acked and never started"
    );
    assert_eq!(twice, 0, "a job ran twice");
    assert!(
        lost + never <= CONCURRENCY,
        "{lost} + {never} lost, more than the {CONCURRENCY} in flight"
    );
}
