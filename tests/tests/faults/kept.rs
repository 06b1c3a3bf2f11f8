//! What messages keep while they are handled, after very many of them.

use std::time::{Duration, Instant};

use jetwire::App;
use jetwire_tests::{Server, unique_prefix};

/// 100,000 jobs through a handler that checkpoints once each: once all
/// are acked, and the purge markers' second has passed, the checkpoint
/// bucket's stream holds (about) nothing, no marker per message, so
/// storage does not grow with throughput.
pub(crate) async fn checkpoint_churn() -> Result<String, String> {
    const NAME: &str = "checkpoint-churn";
    let n: u64 = std::env::var("CHURN_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let server = Server::start();
    let prefix = unique_prefix("ckchurn");
    let cfg = jetwire::Config::builder()
        .url(server.url())
        .subject_prefix(&prefix)
        .app("faults")
        .build()
        .map_err(|e| e.to_string())?;
    let app = App::new(cfg)
        .only(&["checkpoint_churn"])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let t0 = Instant::now();
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            publisher
                .send("queue.ckchurn", &i)
                .await
                .map_err(|e| e.to_string())?,
        );
        if pending.len() >= 1000 {
            for p in pending.drain(..) {
                p.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for p in pending {
        p.await.map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while app.stats()[0].acked < n {
        if Instant::now() > deadline {
            return Err(format!(
                "fault {NAME}: {} of {n} acked in time",
                app.stats()[0].acked
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed().as_secs_f64();
    let js = async_nats::jetstream::new(publisher.client().clone());
    let bucket = format!(
        "KV_{}_JETWIRE_CHECKPOINTS",
        prefix.to_uppercase().replace('.', "_")
    );
    // Removals are purge markers that live a second: wait them out.
    let settle_by = Instant::now() + Duration::from_secs(15);
    let state = loop {
        let state = js
            .get_stream(&bucket)
            .await
            .map_err(|e| format!("{bucket}: {e}"))?
            .info()
            .await
            .map_err(|e| format!("{bucket}: {e}"))?
            .state
            .clone();
        if state.messages <= 100 || Instant::now() > settle_by {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    app.shutdown().await.map_err(|e| e.to_string())?;
    let line = format!(
        "fault {NAME}: jobs={n} acked={n} bucket_messages={} bucket_bytes={} took_s={took:.1}",
        state.messages, state.bytes
    );
    // A few saves may still be in flight as the last acks land.
    if state.messages > 100 {
        return Err(format!("{line}: the bucket grows with the jobs"));
    }
    Ok(line)
}
