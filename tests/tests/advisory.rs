//! A process killed during the last delivery: the message still reaches
//! the DLQ, once, through the server's max-deliveries advisory, also when
//! no replica is running at the moment of the advisory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jetwire::Publisher;
use jetwire_tests::{Server, config, eventually, header, stream_messages, unique_prefix};

struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(server: &Server, prefix: &str, mode: &str) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jetwire-test-worker"))
            .env("NATS_URL", server.url())
            .env("JETWIRE_SUBJECT_PREFIX", prefix)
            .env("JETWIRE_APP", "worker")
            .env("WORKER_MODE", mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let w = Worker { child, lines };
        w.expect_line(|l| l == "READY");
        w
    }

    fn expect_line(&self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("a line from the worker");
            if pred(&line) {
                return line;
            }
        }
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn dlq_settles(
    client: &async_nats::Client,
    prefix: &str,
    n: usize,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let adv_stream = format!("{}_JETWIRE_ADVISORIES", prefix.to_uppercase());
    eventually(
        Duration::from_secs(30),
        &format!("{n} dead letters and no pending advisory"),
        || async {
            let dlq = stream_messages(client, &jetwire_tests::dlq_stream(prefix)).await;
            let pending = stream_messages(client, &adv_stream).await;
            (dlq.len() >= n && pending.is_empty()).then_some(dlq)
        },
    )
    .await
}

fn check_letters(
    dlq: &[async_nats::jetstream::message::StreamMessage],
    handler: &str,
    ids: &[u64],
) {
    let mut got: Vec<u64> = dlq
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("original payload"))
        .collect();
    got.sort();
    assert_eq!(got, ids, "each message dead-lettered exactly once");
    for m in dlq {
        assert_eq!(header(m, "Jetwire-Dlq-Reason"), Some("exhausted"));
        assert_eq!(header(m, "Jetwire-Dlq-Handler"), Some(handler));
        assert_eq!(header(m, "Jetwire-Dlq-Attempts"), Some("2"));
        assert!(header(m, "Jetwire-Dlq-Error").is_some_and(|e| e.contains("never answered")));
    }
}

async fn kill_during_last_delivery(subject: &str, handler: &str, wait_before_restart: bool) {
    let server = Server::start();
    let prefix = unique_prefix(handler);
    let worker = Worker::spawn(&server, &prefix, "hang-last");
    let publisher = Publisher::connect(&config(&server, &prefix, "test"))
        .await
        .expect("connects");
    let ids = [1u64, 2, 3];
    for id in ids {
        publisher.publish(subject, &id).await.expect("published");
    }
    for _ in ids {
        worker.expect_line(|l| l.starts_with("LAST"));
    }
    worker.kill9();
    let client = publisher.client().clone();
    if wait_before_restart {
        // No replica runs while the deliveries time out.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let _replica = Worker::spawn(&server, &prefix, "ok");
    let dlq = dlq_settles(&client, &prefix, ids.len()).await;
    check_letters(&dlq, handler, &ids);
    if subject.starts_with("queue.") {
        let queue = jetwire::topology::queue_stream(Some(&prefix));
        assert!(
            stream_messages(&client, &queue).await.is_empty(),
            "originals removed from the work queue"
        );
    }
    // Nothing more arrives: a second look after the advisories settled.
    let again = dlq_settles(&client, &prefix, ids.len()).await;
    assert_eq!(again.len(), ids.len(), "no duplicate dead letters");
}

#[tokio::test]
async fn work_queue_message_reaches_the_dlq_once() {
    kill_during_last_delivery("queue.adv", "adv", false).await;
}

#[tokio::test]
async fn event_reaches_the_dlq_once_with_no_replica_running() {
    kill_during_last_delivery("advev.created", "adv_event", true).await;
}
