//! Listing a large dead-letter queue with the real `jetwire` binary.

use crate::outbox::with_stream;
use crate::setup::server;

/// `jetwire dlq ls --limit 20` against a DLQ of `n` letters: seconds,
/// and the process's peak RSS in MiB (read by Python's `getrusage`, the
/// way a shell's `time` would).
pub(crate) async fn dlq_ls(n: usize) -> (f64, f64) {
    // The DLQ comes with the stream.
    let prefix = with_stream("dlq", "bench.created").await;
    let client = async_nats::connect(server().url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut acks = Vec::new();
    for i in 0..n {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("dlq:bench:{i}"));
        h.insert("Jetwire-Dlq-Reason", "permanent");
        h.insert("Jetwire-Dlq-Handler", "bench_handler");
        h.insert("Jetwire-Dlq-Error", "a failure of the bench");
        h.insert("Jetwire-Dlq-Attempts", "1");
        let payload = format!(r#"{{"order_id":{i},"email":"someone@example.com"}}"#);
        acks.push(
            js.publish_with_headers(format!("{prefix}.dlq.bench.created"), h, payload.into())
                .await
                .expect("publish"),
        );
        if acks.len() == 4096 {
            let batch = std::mem::take(&mut acks)
                .into_iter()
                .map(std::future::IntoFuture::into_future);
            for a in futures_util::future::join_all(batch).await {
                a.expect("stored");
            }
        }
    }
    let rest = acks.into_iter().map(std::future::IntoFuture::into_future);
    for a in futures_util::future::join_all(rest).await {
        a.expect("stored");
    }
    let exe = std::env::current_exe().expect("exe");
    let cli = exe.with_file_name("jetwire");
    let built = std::process::Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "jetwire-cli"])
        .status()
        .expect("cargo");
    assert!(
        built.success() && cli.exists(),
        "build the CLI: cargo build --release -p jetwire-cli"
    );
    let script = "import resource, subprocess, sys, time\n\
        t = time.monotonic()\n\
        r = subprocess.run(sys.argv[1:], capture_output=True)\n\
        took = time.monotonic() - t\n\
        assert r.returncode == 0, r.stderr\n\
        print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&cli)
        .args(["dlq", "ls", "--limit", "20", "--json"])
        .env("NATS_URL", server().url())
        .env("JETWIRE_SUBJECT_PREFIX", &prefix)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().expect("a figure"));
    (it.next().expect("seconds"), it.next().expect("MiB"))
}
