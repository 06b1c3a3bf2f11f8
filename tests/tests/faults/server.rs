//! Faults of the server: restarted, killed, frozen, durables deleted by
//! an operator.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jetwire_tests::Server;

use crate::figures::{check, through_faults, through_faults_on};
use crate::handlers::full;

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
