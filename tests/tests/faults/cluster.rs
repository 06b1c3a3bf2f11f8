//! Faults of a 3-node cluster with R3 streams: leaders lost and stepping
//! down, a node paused, an app restarted, all while messages flow.

use std::time::{Duration, Instant};

use jetwire::{App, RunningApp};
use jetwire_tests::{Ledger, Server, unique_prefix};

use crate::figures::{check, line, longest_stall, publish_numbered, run_id, settled, wait_for};
use crate::handlers::{Delay, full};

/// The URLs of every node, as one `NATS_URL` list.
fn urls(servers: &[Server]) -> String {
    servers
        .iter()
        .map(Server::url)
        .collect::<Vec<_>>()
        .join(",")
}

fn cluster_config(urls: &str, prefix: &str) -> Result<jetwire::Config, String> {
    jetwire::Config::builder()
        .url(urls)
        .subject_prefix(prefix)
        .app("faults")
        .stream_replicas(3)
        .build()
        .map_err(|e| e.to_string())
}

/// Starts `handler` on the cluster, retrying while the cluster elects its
/// meta leader.
async fn start_on_cluster(
    cfg: &jetwire::Config,
    handler: &str,
    ledger: &Ledger,
    per_call: Duration,
) -> Result<RunningApp, String> {
    let t_start = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match App::new(cfg.clone())
            .only(&[handler])
            .state(ledger.clone())
            .state(Delay { per_call })
            .start()
            .await
        {
            Ok(app) => {
                eprintln!(
                    "cluster: up and consuming after {:.1}s",
                    t_start.elapsed().as_secs_f64()
                );
                return Ok(app);
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("cluster never came up: {e}")),
        }
    }
}

/// Sends a JetStream API request and says what the server answered.
async fn api(client: &async_nats::Client, subject: String) -> String {
    match client.request(subject.clone(), "".into()).await {
        Ok(reply) => String::from_utf8_lossy(&reply.payload).into_owned(),
        Err(e) => format!("{subject}: {e}"),
    }
}

/// `max_deliver = 1` through everything that hands messages back unrun:
/// three consumer leader step-downs, a stream leader step-down, the app
/// shut down with its pull-ahead and started again, and a node paused
/// (SIGSTOP) for 5 s. Every message must be handled: a dead letter here is
/// a message whose one run was used up by hand-backs.
pub(crate) async fn cluster_handbacks() -> Result<String, String> {
    const NAME: &str = "cluster-handbacks";
    let servers = Server::cluster3();
    let urls = urls(&servers);
    let prefix = unique_prefix("cluster-hb");
    let ledger = Ledger::connect(&run_id(), NAME).await;
    let cfg = cluster_config(&urls, &prefix)?;
    let per_call = Duration::from_millis(10);
    let mut app = start_on_cluster(&cfg, "fault_once", &ledger, per_call).await?;
    let n = if full() { 12_000 } else { 3_000 };
    let publisher = app.publisher();
    let pubs = {
        let publisher = publisher.clone();
        tokio::spawn(
            async move { publish_numbered(&publisher, "queue.fault-once", NAME, 0..n).await },
        )
    };
    let client = publisher.client().clone();
    let stream = jetwire::topology::queue_stream(Some(&prefix));
    let durable = app.stats()[0].durable.clone();
    let step = n / 8;
    for k in 1..=3 {
        wait_for(&ledger, k * step, Duration::from_secs(120)).await?;
        let said = api(
            &client,
            format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{durable}"),
        )
        .await;
        eprintln!("{NAME}: consumer step-down {k}: {said}");
    }
    wait_for(&ledger, 4 * step, Duration::from_secs(120)).await?;
    let said = api(&client, format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}")).await;
    eprintln!("{NAME}: stream step-down: {said}");
    wait_for(&ledger, 5 * step, Duration::from_secs(120)).await?;
    app.shutdown().await.map_err(|e| e.to_string())?;
    app = start_on_cluster(&cfg, "fault_once", &ledger, per_call).await?;
    wait_for(&ledger, 6 * step, Duration::from_secs(120)).await?;
    servers[1].pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    servers[1].resume();
    let publish_stall = pubs.await.map_err(|e| e.to_string())?;
    let f = settled(
        &ledger,
        &client,
        &prefix,
        n,
        Duration::from_secs(180),
        publish_stall,
    )
    .await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    drop(servers);
    check(NAME, &f, 0)
}

/// A 3-node cluster with R3 streams: SIGKILL the stream leader
/// mid-run, then make the consumer leader step down.
pub(crate) async fn cluster_leader_loss() -> Result<String, String> {
    let mut servers = Server::cluster3();
    let urls = urls(&servers);
    let prefix = unique_prefix("cluster");
    let ledger = Ledger::connect(&run_id(), "cluster-leader-loss").await;
    let cfg = cluster_config(&urls, &prefix)?;
    let app = start_on_cluster(&cfg, "fault_job", &ledger, Duration::from_millis(2)).await?;
    let n = if full() { 20_000 } else { 4_000 };
    let publisher = app.publisher();
    let pubs = {
        let publisher = publisher.clone();
        tokio::spawn(
            async move { publish_numbered(&publisher, "queue.fault", "cluster", 0..n).await },
        )
    };
    let js = async_nats::jetstream::new(publisher.client().clone());
    let stream_name = jetwire::topology::queue_stream(Some(&prefix));
    wait_for(&ledger, n / 3, Duration::from_secs(120)).await?;
    let leader = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| e.to_string())?
        .info()
        .await
        .map_err(|e| e.to_string())?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .ok_or("the stream has no leader")?;
    let index: usize = leader
        .trim_start_matches('n')
        .parse()
        .map_err(|_| format!("unexpected leader name {leader}"))?;
    let t_kill = Instant::now();
    servers[index].kill();
    let stall_kill = longest_stall(&ledger, 2 * n / 3, Duration::from_secs(120)).await?;
    let kill_s = t_kill.elapsed().as_secs_f64();
    let durable = app.stats()[0].durable.clone();
    let _ = publisher
        .client()
        .request(
            format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{stream_name}.{durable}"),
            "".into(),
        )
        .await
        .map_err(|e| format!("consumer step-down: {e}"))?;
    let stall_stepdown = longest_stall(&ledger, n, Duration::from_secs(120)).await?;
    let publish_stall = pubs.await.map_err(|e| e.to_string())?;
    let recovery_s = stall_kill.max(stall_stepdown);
    let f = settled(
        &ledger,
        publisher.client(),
        &prefix,
        n,
        Duration::from_secs(180),
        recovery_s,
    )
    .await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    eprintln!("cluster: longest wait to store one publish: {publish_stall:.2}s");
    eprintln!(
        "cluster: leader {leader} killed; next third took {kill_s:.1}s, longest stall {stall_kill:.2}s; step-down stall {stall_stepdown:.2}s"
    );
    // While the stream elects a new leader nothing can be stored, so nothing
    // can be handled: that window is the server's (the longest wait to store
    // one publish). What jetwire may add on top of it is two missed pull
    // heartbeats (5 s each).
    if recovery_s > publish_stall + 10.0 {
        return Err(format!(
            "{}: stalled {recovery_s:.1}s, more than two heartbeats beyond the server's own {publish_stall:.1}s",
            line("cluster-leader-loss", &f)
        ));
    }
    check("cluster-leader-loss", &f, 0)
}
