//! A last run is marked begun on the server before its call starts, in
//! the loop's record of the delivery-record bucket, and the mark goes once
//! the message is settled; a bucket too small for the record is raised
//! under `create` and refused, with the fix, under `bind`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::TryStreamExt as _;
use jetwire::{App, Context, Provision, State, queue};
use jetwire_tests::{eventually, shared_server, unique_prefix};

/// Per message, whether its call found its own mark stored when it began.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<u64, bool>>>);

/// Where the handler reads the deployment's delivery-record bucket.
#[derive(Clone)]
struct Bucket(jetstream::Context, String);

#[queue("queue.lr-mark", max_deliver = 1, concurrency = 4)]
async fn marked(n: u64, seen: State<Seen>, bucket: State<Bucket>, ctx: Context) {
    let mark = format!("{}-", base36(ctx.stream_sequence()));
    let (Bucket(js, name), Seen(seen)) = (&*bucket, &*seen);
    let store = js.get_key_value(name).await.expect("the bucket");
    let found = begun_records(&store)
        .await
        .iter()
        .any(|text| text.split(' ').any(|m| m.starts_with(&mark)));
    seen.lock().expect("not poisoned").insert(n, found);
}

/// Every loop's record of last runs begun, from the stream's own list
/// of subjects (a key listing may miss a key rewritten while it reads).
async fn begun_records(store: &kv::Store) -> Vec<String> {
    let filter = format!("{}*.*.begun.*", store.prefix);
    let subjects: Vec<(String, usize)> = store
        .stream
        .info_with_subjects(&filter)
        .await
        .expect("the bucket's subjects")
        .try_collect()
        .await
        .expect("the bucket's subjects");
    let mut records = Vec::new();
    for (subject, _) in subjects {
        let key = subject.trim_start_matches(store.prefix.as_str());
        if let Ok(Some(value)) = store.get(key).await {
            records.push(String::from_utf8_lossy(&value).into_owned());
        }
    }
    records
}

fn base36(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

async fn bucket(prefix: &str) -> Bucket {
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    Bucket(jetstream::new(client), runs_bucket(prefix))
}

fn runs_bucket(prefix: &str) -> String {
    jetwire::topology::default_stream(Some(prefix), "jetwire_runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_last_run_is_marked_before_its_call_and_unmarked_once_settled() {
    let prefix = unique_prefix("lr-mark");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    let seen = Seen::default();
    let app = start(&prefix, Provision::Create, seen.clone())
        .await
        .expect("the app starts");
    let store = js
        .get_key_value(runs_bucket(&prefix))
        .await
        .expect("bucket");
    let publisher = app.publisher();
    const N: u64 = 40;
    for n in 0..N {
        publisher
            .publish("queue.lr-mark", &n)
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(20), "every call", || async {
        (seen.0.lock().expect("not poisoned").len() == N as usize).then_some(())
    })
    .await;
    let unmarked: Vec<u64> = {
        let seen = seen.0.lock().expect("not poisoned");
        (0..N).filter(|n| seen.get(n) != Some(&true)).collect()
    };
    assert!(
        unmarked.is_empty(),
        "calls that began before their mark was stored: {unmarked:?}"
    );
    // Settled: every mark leaves the record, without a new one to carry it.
    eventually(Duration::from_secs(5), "the marks gone", || async {
        begun_records(&store)
            .await
            .iter()
            .all(String::is_empty)
            .then_some(())
    })
    .await;
    app.shutdown().await.expect("shutdown");
    let left = begun_records(&store).await;
    assert!(left.is_empty(), "records of a loop that ended: {left:?}");
}

fn config_with(prefix: &str, provision: Provision) -> jetwire::Config {
    jetwire::Config::builder()
        .url(shared_server().url())
        .subject_prefix(prefix)
        .app("lr")
        .provision(provision)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("a valid config")
}

/// Starts the `marked` handler under `prefix` with `provision`, its
/// calls noted in `seen`.
async fn start(
    prefix: &str,
    provision: Provision,
    seen: Seen,
) -> Result<jetwire::RunningApp, jetwire::Error> {
    App::new(config_with(prefix, provision))
        .only(&["marked"])
        .state(seen)
        .state(bucket(prefix).await)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_too_small_for_the_marks_is_raised_under_create_and_refused_under_bind() {
    let prefix = unique_prefix("lr-room");
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    let stream = format!("KV_{}", runs_bucket(&prefix));
    let limit = || async {
        let info = js.get_stream(&stream).await.expect("the bucket's stream");
        info.cached_info().config.max_message_size
    };
    start(&prefix, Provision::Create, Seen::default())
        .await
        .expect("the first start makes everything")
        .shutdown()
        .await
        .expect("shutdown");
    assert!(limit().await >= 128 * 1024, "the value size it made");
    // As an older jetwire made it: values of 128 bytes at most.
    let mut small = js
        .get_stream(&stream)
        .await
        .expect("the bucket's stream")
        .cached_info()
        .config
        .clone();
    small.max_message_size = 128;
    js.update_stream(small).await.expect("made small");
    let err = start(&prefix, Provision::Bind, Seen::default())
        .await
        .expect_err("a bucket too small under bind");
    let text = err.to_string();
    assert!(
        text.contains(&stream) && text.contains("--max-msg-size") && text.contains("create"),
        "the error names the bucket and both fixes: {text}"
    );
    assert_eq!(limit().await, 128, "bind changed the bucket");
    start(&prefix, Provision::Create, Seen::default())
        .await
        .expect("create raises the bucket's value size")
        .shutdown()
        .await
        .expect("shutdown");
    assert!(limit().await >= 128 * 1024, "the value size after create");
}
