//! Memory: the peak RSS of a child process consuming a backlog, and this
//! process's RSS now.

use async_nats::jetstream::{self};
use futures_util::StreamExt;
use jetwire::App;

use crate::setup::{
    Kind, Msg, RAW_BATCH, fresh_prefix, on_own_runtime, preload, raw_consumer, server, wait_handled,
};

/// Peak RSS (MiB) of a child process consuming a backlog of `n`, loaded
/// by this process beforehand.
pub(crate) fn rss_child(side: &'static str, n: u64) -> f64 {
    let prefix = fresh_prefix("rss");
    let p = prefix.clone();
    on_own_runtime("load", move || {
        Box::pin(async move {
            let client = async_nats::connect(server().url()).await.expect("connect");
            preload(&client, &p, Kind::Events, n, 128).await;
        })
    });
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args(["rss-child", side, &n.to_string(), &server().url(), &prefix])
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "rss child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("child prints MiB")
}

pub(crate) fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// This process's RSS now, in MiB.
pub(crate) fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A size line of `/proc/self/status` (`field` with its colon), in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// In the child: consume the whole backlog; print peak RSS.
#[allow(clippy::print_stdout)]
pub(crate) fn rss_child_main(side: &str, n: u64, url: &str, prefix: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        if side == "jetwire" {
            let cfg = jetwire::Config::builder()
                .url(url)
                .subject_prefix(prefix)
                .app("bench")
                .build()
                .expect("config");
            let app = App::new(cfg)
                .only(&["bench_event"])
                .start()
                .await
                .expect("start");
            wait_handled(n).await;
            app.shutdown().await.expect("shutdown");
        } else {
            let js = jetstream::new(client.clone());
            let stream = js
                .get_stream(Kind::Events.stream(prefix))
                .await
                .expect("stream");
            let consumer = raw_consumer(&stream, Kind::Events.durable(prefix), 10_000).await;
            let mut count = 0;
            while count < n {
                let mut batch = consumer
                    .fetch()
                    .max_messages(RAW_BATCH)
                    .messages()
                    .await
                    .expect("fetch");
                while let Some(Ok(m)) = batch.next().await {
                    let msg: Msg = serde_json::from_slice(&m.payload).expect("decode");
                    std::hint::black_box(&msg);
                    m.ack().await.expect("ack");
                    count += 1;
                }
            }
        }
        client.flush().await.ok();
    });
    println!("{:.1}", peak_rss_mib());
}
