//! The outbox relay through what clusters and outages do: every row
//! stored once and each key's rows in order, none given up on.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use jetwire::{App, PublishOptions};
use jetwire_sql::Outbox;
use jetwire_tests::sql::TestDb;
use jetwire_tests::{Server, stream_messages, unique_prefix};
use serde_json::json;

/// What the stream holds of an outbox run: stored, unique ids, keys whose
/// rows arrived out of order.
struct Stored {
    stored: usize,
    unique: usize,
    out_of_order: usize,
}

impl Stored {
    /// The scenario's line, with `fields` before the counts; an error when
    /// anything was lost, stored twice, reordered, failed or left pending.
    fn verdict(
        &self,
        name: &str,
        total: usize,
        failed: i64,
        pending: i64,
        fields: &str,
    ) -> Result<String, String> {
        let line = format!(
            "fault {name}: {fields}enqueued={total} stored_unique={} lost={} duplicates={} failed={failed} out_of_order_keys={}",
            self.unique,
            total.saturating_sub(self.unique),
            self.stored.saturating_sub(self.unique),
            self.out_of_order,
        );
        if failed != 0 || pending != 0 || self.unique != total || self.out_of_order != 0 {
            return Err(line);
        }
        Ok(line)
    }
}

fn stored(messages: &[async_nats::jetstream::message::StreamMessage]) -> Stored {
    let mut ids = HashSet::new();
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut out_of_order = HashSet::new();
    for m in messages {
        if let Some(id) = m.headers.get("Nats-Msg-Id") {
            ids.insert(id.to_string());
        }
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
        let (Some(k), Some(n)) = (v["key"].as_u64(), v["n"].as_u64()) else {
            continue;
        };
        let want = next.entry(k).or_default();
        if n != *want {
            out_of_order.insert(k);
        }
        *want = n + 1;
    }
    Stored {
        stored: messages.len(),
        unique: ids.len(),
        out_of_order: out_of_order.len(),
    }
}

/// What a cluster scenario does to the stream while the relay publishes.
#[derive(Clone, Copy)]
enum Disruption {
    /// The stream's leader steps down every 2 s, 8 times.
    StepDowns,
    /// The node leading the stream is killed for 10 s, then started
    /// again, twice.
    LeaderDown,
}

/// A 3-node cluster, an R3 stream, and the relay publishing 5,000 keyed
/// rows (50 keys) while they are committed, with the stream's leader
/// stepping down every 2 s: while a new leader is elected, publishes get
/// no answer (503), which must be an outage, not a missing stream.
pub(crate) async fn outbox_stepdowns() -> Result<String, String> {
    outbox_on_cluster("outbox-stepdowns", Disruption::StepDowns).await
}

/// The same, with the node leading the stream killed for 10 s twice
/// (NATS down for the relay when it was connected there, and no leader
/// until the others elect one).
pub(crate) async fn outbox_leader_down() -> Result<String, String> {
    outbox_on_cluster("outbox-leader-down", Disruption::LeaderDown).await
}

/// Makes the stream's leader step down every 2 s, 8 times; how many took.
async fn step_downs(client: async_nats::Client, stream: String) -> u32 {
    let mut downs = 0u32;
    while downs < 8 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}");
        if client.request(subject, "".into()).await.is_ok() {
            downs += 1;
        }
    }
    downs
}

/// Kills the node leading `stream` for 10 s, twice; the servers back, all
/// running, and how many kills took.
async fn leaders_down(
    client: async_nats::Client,
    stream: String,
    mut servers: Vec<Server>,
) -> (Vec<Server>, u32) {
    let js = async_nats::jetstream::new(client);
    let mut downs = 0;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = match js.get_stream(&stream).await {
            Ok(mut s) => s.info().await.ok().and_then(|i| i.cluster.clone()?.leader),
            Err(_) => None,
        };
        let Some(i) = leader.and_then(|l| l.trim_start_matches('n').parse::<usize>().ok()) else {
            continue;
        };
        servers[i].kill();
        tokio::time::sleep(Duration::from_secs(10)).await;
        servers[i].restart();
        downs += 1;
    }
    (servers, downs)
}

async fn outbox_on_cluster(name: &'static str, disruption: Disruption) -> Result<String, String> {
    const KEYS: u64 = 50;
    const PER_KEY: u64 = 100;
    let servers = Server::cluster3();
    let urls = servers
        .iter()
        .map(Server::url)
        .collect::<Vec<_>>()
        .join(",");
    let prefix = unique_prefix("outbox-sd");
    let cfg = jetwire::Config::builder()
        .url(&urls)
        .subject_prefix(&prefix)
        .app("relay")
        .stream_replicas(3)
        .build()
        .map_err(|e| e.to_string())?;
    let db = TestDb::sqlite(name).await;
    let outbox = Outbox::new(db.pool())
        .tables(db.tables().clone())
        .poll_interval(Duration::from_millis(20));
    let stats = outbox.stats();
    // The cluster elects its meta leader first.
    let deadline = Instant::now() + Duration::from_secs(60);
    let streams = loop {
        let made = match jetwire::Publisher::connect(&cfg).await {
            Ok(publisher) => publisher.ensure_streams(&["outboxsd.work"]).await,
            Err(e) => Err(e),
        };
        match made {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("the cluster never came up: {e}")),
        }
    };
    let app = App::new(cfg.clone())
        .only(&[])
        .service(outbox)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let client = app.publisher().client().clone();
    let disrupting = {
        let (client, stream) = (client.clone(), streams[0].clone());
        tokio::spawn(async move {
            match disruption {
                Disruption::StepDowns => (servers, step_downs(client, stream).await),
                Disruption::LeaderDown => leaders_down(client, stream, servers).await,
            }
        })
    };
    for n in 0..PER_KEY {
        let rows = (0..KEYS)
            .map(|k| {
                (
                    "outboxsd.work".to_owned(),
                    json!({"key": k, "n": n}),
                    PublishOptions::new().key(format!("k{k}")),
                )
            })
            .collect();
        db.enqueue(rows, true).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (servers, downs) = disrupting.await.map_err(|e| e.to_string())?;
    let total = usize::try_from(KEYS * PER_KEY).unwrap_or(usize::MAX);
    let wait = Instant::now() + Duration::from_secs(180);
    while Instant::now() < wait && db.count("pending").await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = stored(&stream_messages(&client, &streams[0]).await);
    let failed = db.count("failed").await;
    let pending = db.count("pending").await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    drop(servers);
    let what = match disruption {
        Disruption::StepDowns => "step_downs",
        Disruption::LeaderDown => "leaders_killed",
    };
    s.verdict(
        name,
        total,
        failed,
        pending,
        &format!("{what}={downs} retried={} ", stats.retried()),
    )
}

/// One nats-server stopped for longer than the relay's default retries
/// would last if an outage counted against them (10 attempts, about 4.8
/// min), with the default `Outbox` settings: 50 keys × 20 rows committed
/// before and during the outage are all stored once, in order, none
/// `failed`. `FULL=1` is not needed: the outage is the point.
pub(crate) async fn outbox_outage() -> Result<String, String> {
    const NAME: &str = "outbox-outage";
    const KEYS: u64 = 50;
    const PER_KEY: u64 = 20;
    let outage = Duration::from_secs(
        std::env::var("OUTBOX_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(360),
    );
    let mut server = Server::start();
    let prefix = unique_prefix("outbox-out");
    let cfg = jetwire::Config::builder()
        .url(server.url())
        .subject_prefix(&prefix)
        .app("relay")
        .build()
        .map_err(|e| e.to_string())?;
    let db = TestDb::sqlite(NAME).await;
    let outbox = Outbox::new(db.pool()).tables(db.tables().clone());
    let stats = outbox.stats();
    let app = App::new(cfg.clone())
        .only(&[])
        .service(outbox)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let streams = app
        .publisher()
        .ensure_streams(&["outboxout.work"])
        .await
        .map_err(|e| e.to_string())?;
    let rows = |n: u64| {
        (0..KEYS)
            .map(|k| {
                (
                    "outboxout.work".to_owned(),
                    json!({"key": k, "n": n}),
                    PublishOptions::new().key(format!("k{k}")),
                )
            })
            .collect()
    };
    for n in 0..PER_KEY / 2 {
        db.enqueue(rows(n), true).await.map_err(|e| e.to_string())?;
    }
    server.stop();
    let t_down = Instant::now();
    for n in PER_KEY / 2..PER_KEY {
        db.enqueue(rows(n), true).await.map_err(|e| e.to_string())?;
    }
    while t_down.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let failed_during = db.count("failed").await;
    server.restart();
    let t_up = Instant::now();
    let total = usize::try_from(KEYS * PER_KEY).unwrap_or(usize::MAX);
    let wait = Instant::now() + Duration::from_secs(180);
    while Instant::now() < wait && db.count("pending").await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_s = t_up.elapsed().as_secs_f64();
    let client = app.publisher().client().clone();
    let s = stored(&stream_messages(&client, &streams[0]).await);
    let failed = db.count("failed").await.max(failed_during);
    let pending = db.count("pending").await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    s.verdict(
        NAME,
        total,
        failed,
        pending,
        &format!(
            "outage_s={} retried={} drained_after_s={drained_s:.1} ",
            outage.as_secs(),
            stats.retried()
        ),
    )
}
