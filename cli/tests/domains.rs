//! A deployment whose JetStream is a leaf node's domain, reached through
//! the hub the app connects to, the way multi-site deployments run: the
//! handlers, publishers, buckets, dead letters, advisories and the real
//! `jetwire` binary all work there, and nothing lands in the hub's own
//! JetStream.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use jetwire::async_nats::{self, jetstream};
use jetwire::publish::Message;
use jetwire::registry::Kind;
use jetwire::{App, Config, Context, HandlerError, PublishOptions, queue};
use jetwire_tests::{
    Server, config_list, eventually, free_port, header, letters, stream_messages, unique_prefix,
};

static WORKED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
static ONCE: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

/// Saves a checkpoint (a bucket made on first use), and refuses 13.
#[queue("queue.dom-work", max_deliver = 2, backoff = ["100ms"])]
async fn dom_work(n: u64, ctx: Context) -> Result<(), HandlerError> {
    ctx.checkpoint(&n).await?;
    if n == 13 {
        return Err(HandlerError::permanent("thirteen"));
    }
    WORKED.lock().expect("not poisoned").insert(n);
    Ok(())
}

/// At most one run: each run is marked in the delivery-record bucket first.
#[queue("queue.dom-once", max_deliver = 1)]
async fn dom_once(n: u64) {
    ONCE.lock().expect("not poisoned").insert(n);
}

/// Waits until `client`, on the hub, reaches the leaf's JetStream.
async fn leaf_reachable(client: async_nats::Client) {
    let js = jetstream::with_domain(client, "leaf");
    eventually(
        Duration::from_secs(20),
        "the leaf's JetStream, from the hub",
        || async { js.query_account().await.ok() },
    )
    .await;
}

/// A hub with JetStream domain `hub`, and a leaf node with domain `leaf`
/// connected to it; waits until the hub reaches the leaf's JetStream.
async fn hub_and_leaf() -> (Server, Server) {
    let port = free_port();
    let hub = Server::start_with_config(&format!(
        "server_name: hub\njetstream {{ domain: hub }}\nleafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"
    ));
    let leaf = Server::start_with_config(&format!(
        "server_name: leaf\njetstream {{ domain: leaf }}\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{port}\" }} ] }}\n"
    ));
    let client = async_nats::connect(hub.url())
        .await
        .expect("connect to the hub");
    leaf_reachable(client).await;
    (hub, leaf)
}

fn config(hub: &Server, prefix: &str) -> Config {
    Config::builder()
        .url(hub.url())
        .subject_prefix(prefix)
        .app("dom")
        .jetstream_domain("leaf")
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid config")
}

/// The names of the streams of `js` that belong to `prefix`.
async fn streams_of(js: &jetstream::Context, prefix: &str) -> BTreeSet<String> {
    use futures_util::TryStreamExt;
    let mine = jetwire::topology::dlq_stream(Some(prefix))
        .trim_end_matches("DLQ")
        .to_owned();
    js.stream_names()
        .try_collect::<Vec<String>>()
        .await
        .expect("stream names")
        .into_iter()
        .filter(|n| {
            n.starts_with(&mine) || n.strip_prefix("KV_").is_some_and(|n| n.starts_with(&mine))
        })
        .collect()
}

/// `jetwire args` run against the hub, for the leaf's domain.
fn jetwire(hub: &Server, prefix: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_jetwire"))
        .args(args)
        .args(["--js-domain", "leaf"])
        .env("NATS_URL", hub.url())
        .env("JETWIRE_SUBJECT_PREFIX", prefix)
        .env_remove("NATS_CONTEXT")
        .env_remove("NATS_JS_DOMAIN")
        .output()
        .expect("run jetwire");
    assert!(
        out.status.success(),
        "jetwire {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// Sends a max-deliveries advisory for a `dom_work` message on `leaf`,
/// where its server sends them: it is captured there and dead-letters the
/// message it names.
async fn advise_on(leaf: &async_nats::Client, prefix: &str) {
    let queue = jetwire::topology::queue_stream(Some(prefix));
    let durable = jetwire::topology::durable_for(
        Some(prefix),
        "dom",
        Kind::Queue,
        "dom_work",
        "queue.dom-work",
        None,
    );
    let idle = jetstream::new(leaf.clone())
        .publish(format!("{prefix}.queue.dom-idle"), "1".into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence;
    let advisory = serde_json::json!({
        "type": "io.nats.jetstream.advisory.v1.max_deliver",
        "stream": queue,
        "consumer": durable,
        "stream_seq": idle,
        "deliveries": 2 + 20,
    });
    leaf.publish(
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{queue}.{durable}"),
        advisory.to_string().into(),
    )
    .await
    .expect("advise");
    let two = letters(leaf, prefix, 2).await;
    assert_eq!(
        header(&two[1], jetwire::dlq::SEQUENCE),
        Some(idle.to_string().as_str()),
        "the advised message is dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_on_the_hub_runs_on_the_leafs_jetstream() {
    let (hub, leaf) = hub_and_leaf().await;
    let prefix = unique_prefix("dom");
    let runs_bucket = jetwire::topology::default_stream(Some(&prefix), "jetwire_runs");
    // A bucket of the same name in the hub's own JetStream, which a write
    // to the bucket's subjects on the hub would reach.
    let hub_client = async_nats::connect(hub.url()).await.expect("hub");
    let on_hub = jetstream::new(hub_client.clone());
    on_hub
        .create_key_value(jetstream::kv::Config {
            bucket: runs_bucket.clone(),
            ..Default::default()
        })
        .await
        .expect("a namesake bucket on the hub");
    let app = App::new(config(&hub, &prefix))
        .only(&["dom_work", "dom_once"])
        .start()
        .await
        .expect("the app starts on the leaf's domain");
    let leaf_client = async_nats::connect(leaf.url()).await.expect("leaf");
    let on_leaf = jetstream::new(leaf_client.clone());

    // Publishers on the hub: one at a time, a pipelined batch, a fast batch.
    let publisher = app.publisher();
    for n in 1..=10u64 {
        publisher
            .publish("queue.dom-work", &n)
            .await
            .expect("stored on the leaf");
    }
    let batch = |range: std::ops::RangeInclusive<u64>, subject: &str| -> Vec<Message> {
        range
            .map(|n| Message::json(subject, &n, PublishOptions::new()).expect("a message"))
            .collect()
    };
    let receipts = publisher
        .publish_batch(batch(11..=20, "queue.dom-work"))
        .await
        .expect("a batch stored on the leaf");
    assert_eq!(receipts.len(), 10);
    let fast = publisher
        .publish_fast(batch(1..=50, "queue.dom-once"))
        .await
        .expect("a fast batch stored on the leaf");
    assert_eq!(fast.count, 50);

    eventually(Duration::from_secs(20), "every job run", || async {
        let worked = WORKED.lock().expect("not poisoned").clone();
        let once = ONCE.lock().expect("not poisoned").clone();
        let all_but_13 = (1..=20).filter(|n| *n != 13).all(|n| worked.contains(&n));
        (all_but_13 && (1..=50).all(|n| once.contains(&n))).then_some(())
    })
    .await;

    // The refused job is a dead letter, in the leaf's JetStream.
    let letter = &letters(&leaf_client, &prefix, 1).await[0];
    assert_eq!(header(letter, jetwire::dlq::HANDLER), Some("dom_work"));

    advise_on(&leaf_client, &prefix).await;
    let queue = jetwire::topology::queue_stream(Some(&prefix));

    // Streams and buckets are the leaf's; the hub's JetStream holds none.
    let leafs = streams_of(&on_leaf, &prefix).await;
    let bucket = |name: &str| {
        format!(
            "KV_{}",
            jetwire::topology::default_stream(Some(&prefix), name)
        )
    };
    let (runs, checkpoints) = (bucket("jetwire_runs"), bucket("jetwire_checkpoints"));
    for wanted in [
        &queue,
        &jetwire::topology::dlq_stream(Some(&prefix)),
        &runs,
        &checkpoints,
    ] {
        assert!(
            leafs.contains(wanted),
            "{wanted} is not on the leaf: {leafs:?}"
        );
    }
    assert_eq!(
        streams_of(&on_hub, &prefix).await,
        BTreeSet::from([runs.clone()])
    );
    // The at-most-once marks were written through the domain's API
    // prefix: to the leaf's bucket, none to its namesake on the hub.
    assert!(
        !stream_messages(&leaf_client, &runs).await.is_empty(),
        "no record of a last run reached the leaf's bucket"
    );
    assert_eq!(
        stream_messages(&hub_client, &runs).await.len(),
        0,
        "records written to the hub's namesake bucket"
    );

    // The real CLI, on the hub, for the leaf's domain.
    let listed = jetwire(&hub, &prefix, &["dlq", "ls", "--json"]);
    assert_eq!(
        listed["letters"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let status = jetwire(&hub, &prefix, &["status", "--json"]);
    assert!(status.to_string().contains(&queue), "{status}");
    let workers = jetwire(&hub, &prefix, &["workers", "--json"]);
    assert!(workers.to_string().contains("dom_work"), "{workers}");

    app.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_domain_the_app_starts_on_the_hubs_own_jetstream() {
    let (hub, leaf) = hub_and_leaf().await;
    let prefix = unique_prefix("domhub");
    let mut config = config(&hub, &prefix);
    config.jetstream_domain = None;
    let app = App::new(config)
        .only(&["dom_once"])
        .start()
        .await
        .expect("the app starts on the hub");
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let on_hub = jetstream::new(async_nats::connect(hub.url()).await.expect("hub"));
    let on_leaf = jetstream::new(async_nats::connect(leaf.url()).await.expect("leaf"));
    assert!(streams_of(&on_hub, &prefix).await.contains(&queue));
    assert_eq!(streams_of(&on_leaf, &prefix).await, BTreeSet::new());
    app.shutdown().await.expect("shutdown");
}

/// An app in `bind` mode on the leaf's domain runs with a hub user
/// that has exactly the permissions `App::permissions` lists: its API
/// requests and bucket writes go through the domain's prefix.
#[tokio::test(flavor = "multi_thread")]
async fn bind_on_the_domain_runs_on_exactly_the_permissions_it_lists() {
    let prefix = unique_prefix("domperm");
    let mut bound = config(&Server::start(), &prefix);
    bound.provision = jetwire::Provision::Bind;
    let permissions = App::new(bound).only(&["dom_once"]).permissions();
    for s in &permissions.publish {
        assert!(
            !s.starts_with("$JS.API") && !s.starts_with("$KV."),
            "{s} bypasses the domain: {permissions}"
        );
    }
    let port = free_port();
    let hub = Server::start_with_config(&format!(
        "server_name: hub\njetstream {{ domain: hub }}\nauthorization {{ users = [\n  {{ user: admin, password: admin }}\n  {{ user: svc, password: svc, permissions: {{ publish: [{}, \"{prefix}.queue.dom-once\"], subscribe: [{}] }} }}\n] }}\nleafnodes {{ listen: \"127.0.0.1:{port}\", authorization {{ user: leaf, password: leaf }} }}\n",
        config_list(&permissions.publish),
        config_list(&permissions.subscribe),
    ));
    let _leaf = Server::start_with_config(&format!(
        "server_name: leaf\njetstream {{ domain: leaf }}\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://leaf:leaf@127.0.0.1:{port}\" }} ] }}\n"
    ));
    let as_user = |user: &str, provision| {
        let mut config = config(&hub, &prefix);
        config.auth = jetwire::Auth::UserPassword {
            user: user.into(),
            password: user.into(),
        };
        config.provision = provision;
        config
    };
    let admin = as_user("admin", jetwire::Provision::Create);
    let client = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
        .connect(hub.url())
        .await
        .expect("connect as the admin");
    leaf_reachable(client).await;
    // The admin makes everything, then leaves.
    let made = App::new(admin)
        .only(&["dom_once"])
        .start()
        .await
        .expect("the admin's app");
    made.shutdown().await.expect("shutdown");
    let running = App::new(as_user("svc", jetwire::Provision::Bind))
        .only(&["dom_once"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("the bound app starts: {e}\n{}", hub.log()));
    let batch: Vec<Message> = (1000..1100u64)
        .map(|n| Message::json("queue.dom-once", &n, PublishOptions::new()).expect("a message"))
        .collect();
    running
        .publisher()
        .publish_batch(batch)
        .await
        .expect("published");
    eventually(Duration::from_secs(20), "every job run", || async {
        let once = ONCE.lock().expect("not poisoned");
        (1000..1100u64).all(|n| once.contains(&n)).then_some(())
    })
    .await;
    running.shutdown().await.expect("shutdown");
    let log = hub.log();
    assert!(
        !log.contains("Permissions Violation"),
        "the listed permissions fell short:\n{log}"
    );
}

/// An account without JetStream of its own, importing another's under the
/// API prefix `JS.A.API`: the app runs on the exporter's JetStream.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_importing_jetstream_under_a_prefix_runs_there() {
    let prefix = unique_prefix("domimp");
    let server = Server::start_with_config(&format!(
        r#"accounts {{
  A: {{
    jetstream: enabled
    users: [ {{ user: a, password: a }} ]
    exports: [
      {{ service: "$JS.API.>", response_type: stream }}
      {{ service: "$JS.ACK.>" }}
      {{ service: "$KV.>" }}
      {{ service: "{prefix}.>" }}
    ]
  }}
  B: {{
    users: [ {{ user: b, password: b }} ]
    imports: [
      {{ service: {{ account: A, subject: "$JS.API.>" }}, to: "JS.A.API.>" }}
      {{ service: {{ account: A, subject: "$JS.ACK.>" }} }}
      {{ service: {{ account: A, subject: "$KV.>" }}, to: "JS.A.API.$KV.>" }}
      {{ service: {{ account: A, subject: "{prefix}.>" }} }}
    ]
  }}
}}
"#
    ));
    let mut config = Config::builder()
        .url(server.url())
        .auth(jetwire::Auth::UserPassword {
            user: "b".into(),
            password: "b".into(),
        })
        .subject_prefix(&prefix)
        .app("dom")
        .jetstream_api_prefix("JS.A.API")
        .build()
        .expect("a valid config");
    config.shutdown_timeout = Duration::from_secs(10);
    let app = App::new(config)
        .only(&["dom_work", "dom_once"])
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the app starts on the imported JetStream: {e}\n{}",
                server.log()
            )
        });
    let publisher = app.publisher();
    for n in 101..=105u64 {
        publisher
            .publish("queue.dom-work", &n)
            .await
            .expect("stored in A");
    }
    publisher
        .publish("queue.dom-work", &13u64)
        .await
        .expect("stored in A");
    for n in 2001..=2010u64 {
        publisher
            .publish("queue.dom-once", &n)
            .await
            .expect("stored in A");
    }
    eventually(Duration::from_secs(20), "every job run", || async {
        let worked = WORKED.lock().expect("not poisoned").clone();
        let once = ONCE.lock().expect("not poisoned").clone();
        ((101..=105).all(|n| worked.contains(&n)) && (2001..=2010).all(|n| once.contains(&n)))
            .then_some(())
    })
    .await;
    let exporter = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .connect(server.url())
        .await
        .expect("connect as account A");
    let letter = &letters(&exporter, &prefix, 1).await[0];
    assert_eq!(header(letter, jetwire::dlq::HANDLER), Some("dom_work"));
    let runs = format!(
        "KV_{}",
        jetwire::topology::default_stream(Some(&prefix), "jetwire_runs")
    );
    assert!(
        !stream_messages(&exporter, &runs).await.is_empty(),
        "no record of a last run reached A's bucket"
    );
    app.shutdown().await.expect("shutdown");
}
