//! `jetwire::App::run` in its own process: SIGTERM with 50 calls in flight
//! lets all of them finish, exits 0, and nothing is redelivered afterwards.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetwire::Publisher;
use jetwire_tests::{Server, config, unique_prefix};

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let server = Server::start();
    let prefix = unique_prefix("sigterm");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_jetwire-test-worker"))
            .env("NATS_URL", server.url())
            .env("JETWIRE_SUBJECT_PREFIX", &prefix)
            .env("JETWIRE_APP", "worker")
            .env("WORKER_MODE", "slow")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts")
    };
    let mut child = spawn();
    let publisher = Publisher::connect(&config(&server, &prefix, "test"))
        .await
        .expect("connects");
    // The worker creates the stream as it starts; publish once it exists.
    let deadline = Instant::now() + Duration::from_secs(20);
    while publisher.publish("queue.slowterm", &0u64).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the worker never created its stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in 1..50u64 {
        publisher
            .publish("queue.slowterm", &id)
            .await
            .expect("published");
    }
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(child.stdout.take().expect("piped"))
            .lines()
            .map_while(Result::ok);
        let mut started = 0;
        for line in lines.by_ref() {
            if line.starts_with("START") {
                started += 1;
                if started == 50 {
                    break;
                }
            }
        }
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        assert!(term.is_ok_and(|s| s.success()));
        let rest: Vec<String> = lines.collect();
        (child.wait().expect("worker exits"), rest)
    })
    .await
    .expect("joined");
    let (status, rest) = lines;
    assert!(status.success(), "exit status {status:?}");
    let done = rest.iter().filter(|l| l.starts_with("DONE")).count();
    assert_eq!(done, 50, "every in-flight call finished before exit");

    // A fresh worker gets nothing back.
    let mut again = spawn();
    publisher
        .publish("queue.slowterm", &1000u64)
        .await
        .expect("published");
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(again.stdout.take().expect("piped"))
            .lines()
            .map_while(Result::ok)
        {
            if let Some(id) = line.strip_prefix("START ") {
                seen.push(id.to_owned());
                if id == "1000" {
                    break;
                }
            }
        }
        let _ = again.kill();
        let _ = again.wait();
        seen
    })
    .await
    .expect("joined");
    assert_eq!(
        seen,
        ["1000"],
        "only the new message; nothing was redelivered"
    );
}
