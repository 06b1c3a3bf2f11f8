//! Checkpoints against a real server: a job killed with SIGKILL mid-way
//! resumes from its last checkpoint in the next process, and the
//! checkpoint is gone once the job is acked, and once it is dead-lettered.

use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{Context, HandlerError, queue};
use jetwire_tests::{WorkerProcess, eventually, shared_server, unique_prefix};

const WORKER: &str = env!("CARGO_BIN_EXE_jetwire-test-worker");

/// What the deployment's checkpoint bucket stores: every message of its
/// stream, purge markers included (a key-value listing hides those); 0
/// only if the bucket is not made yet. Any other error fails the test.
async fn checkpoint_keys(prefix: &str) -> u64 {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connects");
    let js = async_nats::jetstream::new(client);
    let stream = format!(
        "KV_{}_JETWIRE_CHECKPOINTS",
        prefix.to_uppercase().replace('.', "_")
    );
    match js.get_stream(&stream).await {
        Ok(mut s) => s.info().await.expect("the bucket's state").state.messages,
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            0
        }
        Err(e) => panic!("cannot read {stream}: {e}"),
    }
}

fn number(line: &str) -> u32 {
    line.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[tokio::test]
async fn a_killed_job_resumes_from_its_last_checkpoint_and_settling_removes_it() {
    let prefix = unique_prefix("ckpt");
    let url = shared_server().url();
    let first = WorkerProcess::ready(WORKER, &url, &prefix, "checkpoint", &[]);
    let publisher = jetwire::Publisher::connect(
        &jetwire::Config::builder()
            .url(&url)
            .subject_prefix(&prefix)
            .build()
            .expect("valid"),
    )
    .await
    .expect("connects");
    publisher
        .publish("queue.ckpt", &7u64)
        .await
        .expect("publish");
    assert_eq!(number(&first.expect_line(|l| l.starts_with("RESUME 7"))), 0);
    first.expect_line(|l| l == "STEP 7 3");
    first.kill9();
    assert_eq!(
        checkpoint_keys(&prefix).await,
        1,
        "the checkpoint outlives the process"
    );

    // The next process gets the job after ack_wait and resumes at step 3
    // or later (a save may land just before the kill).
    let second = WorkerProcess::ready(WORKER, &url, &prefix, "checkpoint", &[]);
    let resumed = number(&second.expect_line(|l| l.starts_with("RESUME 7")));
    assert!((3..=4).contains(&resumed), "resumed at {resumed}");
    second.expect_line(|l| l == "DONE 7");
    eventually(
        Duration::from_secs(10),
        "the checkpoint removed at ack",
        || async { (checkpoint_keys(&prefix).await == 0).then_some(()) },
    )
    .await;

    // Dead-lettered after its steps: its checkpoint goes too.
    publisher
        .publish("queue.ckpt", &99u64)
        .await
        .expect("publish");
    second.expect_line(|l| l == "STEP 99 6");
    eventually(
        Duration::from_secs(10),
        "the checkpoint removed at the dead letter",
        || async {
            let (letters, _) = jetwire::dlq::DeadLetters::on(publisher.clone())
                .count()
                .await
                .unwrap_or((0, 0));
            (letters == 1 && checkpoint_keys(&prefix).await == 0).then_some(())
        },
    )
    .await;
    let (_, _) = second.terminate();
}

/// A stream deleted and made again numbers its messages from 1 again: a
/// new message at the sequence of one that checkpointed starts afresh.
#[tokio::test]
async fn a_new_message_at_a_recreated_streams_sequence_does_not_resume_an_old_checkpoint() {
    let prefix = unique_prefix("ckptnew");
    let url = shared_server().url();
    let first = WorkerProcess::ready(WORKER, &url, &prefix, "checkpoint", &[]);
    let publisher = jetwire::Publisher::connect(
        &jetwire::Config::builder()
            .url(&url)
            .subject_prefix(&prefix)
            .build()
            .expect("valid"),
    )
    .await
    .expect("connects");
    let receipt = publisher
        .publish("queue.ckpt", &7u64)
        .await
        .expect("publish");
    first.expect_line(|l| l == "STEP 7 3");
    first.kill9();
    let js = async_nats::jetstream::new(publisher.client().clone());
    js.delete_stream(&receipt.stream).await.expect("deleted");
    let second = WorkerProcess::ready(WORKER, &url, &prefix, "checkpoint", &[]);
    let again = publisher
        .publish("queue.ckpt", &8u64)
        .await
        .expect("publish");
    assert_eq!(again.sequence, receipt.sequence, "the same sequence");
    assert_eq!(
        number(&second.expect_line(|l| l.starts_with("RESUME 8"))),
        0,
        "a new message starts at its first step"
    );
    second.expect_line(|l| l == "DONE 8");
    let (_, _) = second.terminate();
}

#[queue("queue.ckptmem", max_deliver = 3, backoff = ["10ms"])]
async fn ckpt_mem(_job: u64, ctx: Context) -> Result<(), HandlerError> {
    let done: u32 = ctx.last_checkpoint().await?.unwrap_or(0);
    ctx.checkpoint(&(done + 1)).await?;
    if done < 2 {
        // A crash in all but name: the redelivery sees the checkpoint.
        return Err(HandlerError::transient(format!(
            "stopped after step {}",
            done + 1
        )));
    }
    Ok(())
}

#[tokio::test]
async fn testapp_keeps_checkpoints_across_redeliveries() {
    let app = TestApp::new().only(&["ckpt_mem"]);
    let report = app.publish("queue.ckptmem", &1u64).await;
    assert!(report.acked());
    assert_eq!(report.attempts(), 3, "each run resumed one step further");
}

#[queue("queue.ckptbig")]
async fn ckpt_big(_job: u64, ctx: Context) -> Result<(), HandlerError> {
    let big = "x".repeat(200 * 1024);
    match ctx.checkpoint(&big).await {
        Err(e) if e.to_string().contains("over the limit") => Err(HandlerError::permanent(e)),
        other => other.map_err(HandlerError::transient),
    }
}

#[tokio::test]
async fn a_checkpoint_over_the_limit_is_refused_with_why() {
    let app = TestApp::new().only(&["ckpt_big"]);
    let report = app.publish("queue.ckptbig", &1u64).await;
    assert!(report.dead_lettered());
    let runs = report.runs();
    assert!(
        runs[0].errors()[0].contains("not the data"),
        "{:?}",
        runs[0].errors()
    );
}

#[queue("queue.ckptmark")]
async fn ckpt_mark(job: u64, ctx: Context) -> Result<(), HandlerError> {
    ctx.checkpoint(&job).await?;
    Ok(())
}

/// A bucket made before removals were markers (no message TTLs) is given
/// them where jetwire may create: a settled message's checkpoint then goes
/// as a purge marker that expires, and the bucket empties.
#[tokio::test]
async fn a_bucket_made_without_message_ttls_gets_them_and_settling_empties_it() {
    let prefix = unique_prefix("ckptmark");
    let url = shared_server().url();
    let client = async_nats::connect(&url).await.expect("connects");
    let js = async_nats::jetstream::new(client);
    let bucket = format!(
        "{}_JETWIRE_CHECKPOINTS",
        prefix.to_uppercase().replace('.', "_")
    );
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: bucket.clone(),
        history: 1,
        ..Default::default()
    })
    .await
    .expect("the old bucket");
    let stream = format!("KV_{bucket}");
    let ttls = || async {
        let mut stream = js.get_stream(&stream).await.expect("there");
        stream
            .info()
            .await
            .expect("its info")
            .config
            .allow_message_ttl
    };
    assert!(!ttls().await);
    let config = jetwire::Config::builder()
        .url(&url)
        .subject_prefix(&prefix)
        .app("ckptmark")
        .build()
        .expect("valid");
    let running = jetwire::App::new(config)
        .only(&["ckpt_mark"])
        .start()
        .await
        .expect("starts");
    for job in 0..20u64 {
        running
            .publisher()
            .publish("queue.ckptmark", &job)
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(10), "every job acked", || async {
        (running.stats()[0].acked == 20).then_some(())
    })
    .await;
    assert!(ttls().await, "message TTLs turned on");
    eventually(
        Duration::from_secs(10),
        "the markers expired, the bucket empty",
        || async { (checkpoint_keys(&prefix).await == 0).then_some(()) },
    )
    .await;
    running.shutdown().await.expect("drains");
}
