//! Faults of the server: restarted, frozen, durables deleted by an
//! operator, a cluster losing its leader.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use jetwire::App;
use jetwire_tests::{Ledger, Server, unique_prefix};

use crate::figures::{
    check, line, longest_stall, publish_numbered, run_id, settled, through_faults,
    through_faults_on, wait_for,
};
use crate::handlers::{Delay, full};

pub(crate) async fn server_restart() -> Result<String, String> {
    let n = if full() { 20_000 } else { 4_000 };
    let f = through_faults(
        "server-restart",
        QUEUE,
        n,
        |_, server| Box::pin(async move { server.restart() }),
        2,
    )
    .await?;
    check("server-restart", &f, 0)
}

/// The single server SIGKILLed twice mid-run and started again on its
/// store: what an R1 stream keeps of what it acknowledged when its process
/// dies, with the default `sync_interval` (the OS still holds what was
/// written) and with `sync_interval: always` (fsync before every ack).
pub(crate) async fn server_kill9(sync_always: bool) -> Result<String, String> {
    let name = if sync_always {
        "server-kill9-sync-always"
    } else {
        "server-kill9"
    };
    let n = if full() { 20_000 } else { 4_000 };
    let server = if sync_always {
        Server::start_with_config("jetstream {\n  sync_interval: always\n}")
    } else {
        Server::start()
    };
    let f = through_faults_on(
        server,
        name,
        QUEUE,
        n,
        |_, server| {
            Box::pin(async move {
                server.kill();
                server.restart();
            })
        },
        2,
    )
    .await?;
    check(name, &f, 0)
}

pub(crate) async fn server_freeze() -> Result<String, String> {
    let n = if full() { 20_000 } else { 3_000 };
    let f = through_faults(
        "server-freeze",
        QUEUE,
        n,
        |_, server| {
            Box::pin(async move {
                server.pause();
                tokio::time::sleep(Duration::from_secs(10)).await;
                server.resume();
            })
        },
        1,
    )
    .await?;
    check("server-freeze", &f, 0)
}

pub(crate) const QUEUE: (&str, &str) = ("queue.fault", "fault_job");
pub(crate) const EVENTS: (&str, &str) = ("fevents.data", "fault_event");

/// Deletes every durable on the server but jetwire's advisory reader.
pub(crate) fn delete_durables(
    server: &mut Server,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    let url = server.url();
    Box::pin(async move {
        use futures_util::StreamExt;
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut names = js.stream_names();
        while let Some(Ok(stream)) = names.next().await {
            if stream.ends_with("JETWIRE_ADVISORIES") {
                continue;
            }
            if let Ok(s) = js.get_stream(&stream).await {
                let mut consumers = s.consumer_names();
                while let Some(Ok(c)) = consumers.next().await {
                    let _ = s.delete_consumer(&c).await;
                }
            }
        }
    })
}

/// Scenario 7: the durable deleted by an operator, twice, while running.
pub(crate) async fn durable_deleted(
    name: &'static str,
    target: (&'static str, &'static str),
) -> Result<String, String> {
    let n = if full() { 20_000 } else { 6_000 };
    let f = through_faults(name, target, n, |_, server| delete_durables(server), 2).await?;
    check(name, &f, 0)
}

/// Scenario 8: a 3-node cluster with R3 streams: SIGKILL the stream leader
/// mid-run, then make the consumer leader step down.
pub(crate) async fn cluster_leader_loss() -> Result<String, String> {
    let mut servers = Server::cluster3();
    let urls = servers
        .iter()
        .map(|s| s.url())
        .collect::<Vec<_>>()
        .join(",");
    let prefix = unique_prefix("cluster");
    let ledger = Ledger::connect(&run_id(), "cluster-leader-loss").await;
    let cfg = jetwire::Config::builder()
        .url(&urls)
        .subject_prefix(&prefix)
        .app("faults")
        .stream_replicas(3)
        .build()
        .map_err(|e| e.to_string())?;
    // The cluster elects its meta leader first: retry startup for a while.
    let t_start = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let app = loop {
        match App::new(cfg.clone())
            .only(&["fault_job"])
            .state(ledger.clone())
            .state(Delay {
                per_call: Duration::from_millis(2),
            })
            .start()
            .await
        {
            Ok(app) => break app,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("cluster never came up: {e}")),
        }
    };
    eprintln!(
        "cluster: up and consuming after {:.1}s",
        t_start.elapsed().as_secs_f64()
    );
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
