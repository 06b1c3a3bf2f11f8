//! Partitioned handlers in one process: what startup refuses around a
//! partitioned subject, a retried job holding back its key's later jobs
//! on the server, `TestApp`'s partitions, and concurrent startups
//! recording partition counts. Replicas in processes of their own, under
//! faults: `partition_faults.rs`.

use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, HandlerError, PublishOptions, queue};
use jetwire_tests::{config, shared_server, unique_prefix};

fn config_for(prefix: &str) -> jetwire::Config {
    config(shared_server(), prefix, "parts")
}

#[queue("queue.partsplain")]
async fn plain(_job: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsplain", partitions = 4)]
async fn split(_job: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsplain", partitions = 8)]
async fn split8(_job: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn startup_refuses_what_would_lose_keyed_messages() {
    let prefix = unique_prefix("partscheck");
    // What the app needs on the server lists each partition's durable.
    let permissions = App::new(config_for(&prefix))
        .only(&["split"])
        .permissions()
        .to_string();
    for wanted in ["CONSUMER.UNPIN.", "_queue_partsplain-p3", "STREAM.UPDATE."] {
        assert!(
            permissions.contains(wanted),
            "{wanted} missing from {permissions}"
        );
    }
    let running = App::new(config_for(&prefix))
        .only(&["split"])
        .start()
        .await
        .expect("a partitioned handler starts");
    running.shutdown().await.expect("stops");

    let err = App::new(config_for(&prefix))
        .only(&["plain"])
        .start()
        .await
        .expect_err("an unpartitioned reader of a partitioned subject is refused");
    let text = err.to_string();
    assert!(
        text.contains("partitioned in 4") && text.contains("partitions = 4"),
        "{text}"
    );

    let err = App::new(config_for(&prefix))
        .only(&["split8"])
        .start()
        .await
        .expect_err("another partition count is refused");
    let text = err.to_string();
    assert!(
        text.contains("partitions = 8") && text.contains("Set `partitions = 4`"),
        "{text}"
    );
}

#[tokio::test]
async fn testapp_reads_keys_in_the_partition_the_server_would() {
    let app = TestApp::new().only(&["split"]);
    let report = app
        .publish_with(
            "queue.partsplain",
            &1,
            PublishOptions::new().key("order-42"),
        )
        .await;
    let run = report.run("split").expect("split ran");
    assert_eq!(
        run.partition(),
        Some(jetwire::topology::partition_of("order-42", 4))
    );
    let unkeyed = app.publish("queue.partsplain", &2).await;
    assert_eq!(unkeyed.run("split").expect("ran").partition(), None);
    let direct = app.publish("queue.partsplain._p3", &3).await;
    assert_eq!(direct.run("split").expect("ran").partition(), Some(3));
}

/// The order `ordered` was called in: (key, n, attempt).
static CALLS: std::sync::Mutex<Vec<(String, u32, u32)>> = std::sync::Mutex::new(Vec::new());

#[derive(serde::Deserialize)]
struct Job {
    key: String,
    n: u32,
}

/// Fails each key's first job once.
#[queue("queue.partsordered", partitions = 4, backoff = ["1s"])]
async fn ordered(job: Job, ctx: jetwire::Context) -> Result<(), HandlerError> {
    CALLS
        .lock()
        .expect("calls")
        .push((job.key.clone(), job.n, ctx.attempt()));
    if job.n == 0 && ctx.attempt() == 1 {
        return Err(HandlerError::transient("not yet"));
    }
    Ok(())
}

#[tokio::test]
async fn testapp_keeps_a_keys_order_through_a_retry() {
    let app = TestApp::new().only(&["ordered"]);
    for n in 0..3 {
        for key in ["a", "b"] {
            let job = serde_json::json!({ "key": key, "n": n });
            let report = app
                .publish_with("queue.partsordered", &job, PublishOptions::new().key(key))
                .await;
            let run = report.run("ordered").expect("ran");
            assert!(run.acked());
            assert_eq!(
                run.partition(),
                Some(jetwire::topology::partition_of(key, 4))
            );
        }
    }
    let calls = CALLS.lock().expect("calls").clone();
    for key in ["a", "b"] {
        let of_key: Vec<(u32, u32)> = calls
            .iter()
            .filter(|c| c.0 == key)
            .map(|c| (c.1, c.2))
            .collect();
        assert_eq!(of_key, [(0, 1), (0, 2), (1, 1), (2, 1)], "key {key}");
    }
}

static BILLING_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[jetwire::subscribe("partsev.created")]
async fn billing_reader(_n: u64) -> Result<(), HandlerError> {
    BILLING_SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[jetwire::subscribe("partsev.created", partitions = 4)]
async fn shipping_reader(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

/// Partitioning a subject another app already reads unpartitioned would
/// send its keyed messages where that reader never looks: the partitioned
/// app does not start, names the consumer, and the reader keeps getting
/// every keyed message.
#[tokio::test]
async fn a_subject_another_app_reads_unpartitioned_is_not_partitioned_under_it() {
    let prefix = unique_prefix("partsreader");
    let billing = App::new(config(shared_server(), &prefix, "billing"))
        .only(&["billing_reader"])
        .start()
        .await
        .expect("billing starts");
    let err = App::new(config(shared_server(), &prefix, "shipping"))
        .only(&["shipping_reader"])
        .start()
        .await
        .expect_err("shipping would take billing's keyed messages");
    let text = err.to_string();
    assert!(
        text.contains("billing") && text.contains("would stop seeing keyed messages"),
        "{text}"
    );
    let publisher = billing.publisher();
    for n in 0..100u64 {
        publisher
            .publish_with(
                "partsev.created",
                &n,
                PublishOptions::new().key(format!("k{}", n % 10)),
            )
            .await
            .expect("publish");
    }
    jetwire_tests::eventually(Duration::from_secs(20), "billing saw 100", || async {
        (BILLING_SEEN.load(std::sync::atomic::Ordering::SeqCst) == 100).then_some(())
    })
    .await;
    billing.shutdown().await.expect("stops");
}

/// What `ordered_live` was called with: (key, n, attempt).
static LIVE_CALLS: std::sync::Mutex<Vec<(String, u32, u32)>> = std::sync::Mutex::new(Vec::new());

/// Fails each key's first job once, on the server.
#[queue("queue.partslive", partitions = 4, backoff = ["300ms"])]
async fn ordered_live(job: Job, ctx: jetwire::Context) -> Result<(), HandlerError> {
    LIVE_CALLS
        .lock()
        .expect("calls")
        .push((job.key.clone(), job.n, ctx.attempt()));
    if job.n == 0 && ctx.attempt() == 1 {
        return Err(HandlerError::transient("not yet"));
    }
    Ok(())
}

/// On a real server, a key's job that fails and waits its backoff holds
/// back the key's later jobs: each key's calls go 0 (failed), 0, 1, 2, ...
#[tokio::test]
async fn a_retried_job_holds_back_its_keys_later_jobs_on_the_server() {
    let prefix = unique_prefix("partslive");
    let running = App::new(config_for(&prefix))
        .only(&["ordered_live"])
        .start()
        .await
        .expect("starts");
    let keys = ["a", "b", "c", "d", "e", "f"];
    for n in 0..5u32 {
        for key in keys {
            running
                .publisher()
                .publish_with(
                    "queue.partslive",
                    &serde_json::json!({ "key": key, "n": n }),
                    PublishOptions::new().key(key),
                )
                .await
                .expect("publish");
        }
    }
    jetwire_tests::eventually(Duration::from_secs(30), "every job done", || async {
        let acked: u64 = running.stats().iter().map(|s| s.acked).sum();
        (acked == 30).then_some(())
    })
    .await;
    let calls = LIVE_CALLS.lock().expect("calls").clone();
    for key in keys {
        let of_key: Vec<(u32, u32)> = calls
            .iter()
            .filter(|c| c.0 == key)
            .map(|c| (c.1, c.2))
            .collect();
        assert_eq!(
            of_key,
            vec![(0, 1), (0, 2), (1, 1), (2, 1), (3, 1), (4, 1)],
            "key {key}"
        );
    }
    running.shutdown().await.expect("stops");
}

#[queue("queue.partsrace-a", partitions = 2)]
async fn race_a(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsrace-b", partitions = 2)]
async fn race_b(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsrace-c", partitions = 2)]
async fn race_c(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsrace-d", partitions = 2)]
async fn race_d(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsrace-e", partitions = 2)]
async fn race_e(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.partsrace-f", partitions = 2)]
async fn race_f(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

const ROUNDS: usize = 20;

const RACERS: &[(&str, &str)] = &[
    ("race_a", "queue.partsrace-a"),
    ("race_b", "queue.partsrace-b"),
    ("race_c", "queue.partsrace-c"),
    ("race_d", "queue.partsrace-d"),
    ("race_e", "queue.partsrace-e"),
    ("race_f", "queue.partsrace-f"),
];

/// Six apps partitioning six subjects of one stream start at the same
/// moment, twenty times: each time all six start (none refused for a
/// stream another made meanwhile), and every count ends up recorded in
/// the stream's metadata (a lost one would leave its keyed messages
/// unpartitioned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn concurrent_startups_record_every_partition_count() {
    let mut lost = Vec::new();
    for round in 0..ROUNDS {
        let prefix = unique_prefix(&format!("partsrace{round}"));
        let starts = RACERS.iter().map(|(handler, _)| {
            App::new(config(shared_server(), &prefix, handler))
                .only(&[handler])
                .start()
        });
        let apps: Vec<_> = futures_util::future::join_all(starts)
            .await
            .into_iter()
            .map(|a| a.expect("starts"))
            .collect();
        let js = jetwire::async_nats::jetstream::new(apps[0].publisher().client().clone());
        let queue = jetwire::topology::queue_stream(Some(&prefix));
        let metadata = js
            .get_stream(&queue)
            .await
            .expect("the stream")
            .info()
            .await
            .expect("its info")
            .config
            .metadata
            .clone();
        for (_, subject) in RACERS {
            let key = format!("jetwire.partitions.{prefix}.{subject}");
            if metadata.get(&key).map(String::as_str) != Some("2") {
                lost.push(format!("round {round}: {key} is {:?}", metadata.get(&key)));
            }
        }
        for app in apps {
            app.shutdown().await.expect("stops");
        }
    }
    println!(
        "{} of {} partition counts lost",
        lost.len(),
        ROUNDS * RACERS.len()
    );
    assert!(lost.is_empty(), "{lost:#?}");
}
