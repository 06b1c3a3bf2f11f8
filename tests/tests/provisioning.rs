//! Provisioning under the operator's control: bind-only startup that
//! lists what is missing and runs on exactly the permissions it prints,
//! stream settings, publish-only services, bringing your own connection,
//! and work queues on streams the operator made.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::async_nats;
use jetwire::{
    App, Auth, Config, Error, HandlerError, Provision, Publisher, Storage, StreamSettings, queue,
    subscribe,
};
use jetwire_tests::{
    Server, config_list, eventually, shared_server, stream_messages, unique_prefix,
};

#[subscribe("prov.created", max_deliver = 2, backoff = ["50ms"])]
async fn prov_event(n: u64) -> Result<(), HandlerError> {
    match n {
        0 => Err(HandlerError::permanent("poison")),
        1 => Err(HandlerError::transient("fails every time")),
        _ => Ok(()),
    }
}

#[queue("queue.prov")]
async fn prov_job(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("legacyjobs.render", stream = "LEGACYJOBS")]
async fn legacy_render(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

const HANDLERS: &[&str] = &["prov_event", "prov_job"];

fn config(server: &Server, prefix: &str) -> jetwire::ConfigBuilder {
    Config::builder()
        .url(server.url())
        .app("prov")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(5))
}

async fn stream_names(client: &async_nats::Client) -> Vec<String> {
    use futures_util::TryStreamExt;
    let js = async_nats::jetstream::new(client.clone());
    js.stream_names().try_collect().await.expect("stream names")
}

#[tokio::test]
async fn bind_creates_nothing_and_lists_what_is_missing() {
    let server = shared_server();
    let prefix = unique_prefix("bind-missing");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let before = stream_names(&client).await;
    let err = App::new(
        config(server, &prefix)
            .provision(Provision::Bind)
            .build()
            .expect("valid"),
    )
    .only(HANDLERS)
    .start()
    .await
    .expect_err("nothing exists to bind");
    let Error::NotProvisioned {
        missing,
        permissions,
    } = &err
    else {
        panic!("not a provisioning error: {err}");
    };
    let upper = prefix.to_uppercase().replace('.', "_");
    for want in [
        format!("stream `{upper}_DLQ`"),
        format!("stream `{upper}_PROV`"),
        format!("stream `{upper}_QUEUE`"),
        format!("durable `{prefix}_prov-prov_event`"),
        format!("durable `{prefix}_queue_prov`"),
        format!("stream `{upper}_JETWIRE_ADVISORIES`"),
        format!("bucket `{upper}_JETWIRE_RUNS`"),
        format!("bucket `{upper}_JETWIRE_WORKERS`"),
    ] {
        assert!(
            missing.iter().any(|m| m.contains(&want)),
            "{want} not in {missing:#?}"
        );
    }
    assert!(
        permissions.contains("$JS.API.CONSUMER.MSG.NEXT."),
        "{permissions}"
    );
    assert!(err.to_string().contains("JETWIRE_PROVISION=bind"), "{err}");
    assert_eq!(
        stream_names(&client).await,
        before,
        "bind created something"
    );
}

/// The app in `bind` mode runs with a NATS user that has exactly the
/// permissions `App::permissions` lists, once an admin made the streams:
/// acks, retries and dead letters all work, and the server logs no
/// permission violation.
#[tokio::test]
async fn bind_runs_on_exactly_the_permissions_it_lists() {
    let prefix = unique_prefix("bind-perms");
    let probe = Server::start();
    let bound = config(&probe, &prefix)
        .provision(Provision::Bind)
        .build()
        .expect("valid");
    let permissions = App::new(bound).only(HANDLERS).permissions();
    let server = Server::start_with_config(&format!(
        "authorization {{ users = [\n  {{ user: admin, password: admin }}\n  {{ user: svc, password: svc, permissions: {{ publish: [{}, \"{prefix}.prov.created\"], subscribe: [{}] }} }}\n] }}\n",
        config_list(&permissions.publish),
        config_list(&permissions.subscribe),
    ));
    drop(probe);
    let as_user = |user: &str, provision| {
        config(&server, &prefix)
            .auth(Auth::UserPassword {
                user: user.into(),
                password: user.into(),
            })
            .provision(provision)
            .build()
            .expect("valid")
    };
    // The admin makes everything (as an IaC run would), then leaves.
    let admin = App::new(as_user("admin", Provision::Create))
        .only(HANDLERS)
        .start()
        .await
        .expect("the admin's app starts");
    admin.shutdown().await.expect("shutdown");
    let running = App::new(as_user("svc", Provision::Bind))
        .only(HANDLERS)
        .start()
        .await
        .unwrap_or_else(|e| panic!("the bound app starts: {e}\n{}", server.log()));
    let publisher = running.publisher();
    for n in [0u64, 1, 2] {
        publisher
            .publish("prov.created", &n)
            .await
            .expect("publish");
    }
    let stats = eventually(
        Duration::from_secs(20),
        "ack, retry and two dead letters",
        || async {
            let s = running
                .stats()
                .into_iter()
                .find(|s| s.handler == "prov_event")?;
            (s.acked == 1 && s.dead_lettered == 2).then_some(s)
        },
    )
    .await;
    assert_eq!(stats.retried, 1);
    running.shutdown().await.expect("shutdown");
    let log = server.log();
    assert!(
        !log.contains("Permissions Violation"),
        "the listed permissions fell short:\n{log}"
    );
}

/// Captures what the code under test logs on this thread.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

/// What an app of [`HANDLERS`] logs as it starts and stops, on this
/// thread (the test's, where startup runs).
async fn logs_of_a_run(config: Config) -> String {
    let (logs, guard) = capture_logs();
    let running = App::new(config)
        .only(HANDLERS)
        .start()
        .await
        .expect("starts");
    running.shutdown().await.expect("shutdown");
    drop(guard);
    String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned()
}

#[tokio::test]
async fn streams_take_the_configured_settings_and_weaker_ones_are_reported() {
    let server = shared_server();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let prefix = unique_prefix("settings");
    let upper = prefix.to_uppercase().replace('.', "_");
    let defaults = StreamSettings {
        max_bytes: Some(64 << 20),
        storage: Some(Storage::Memory),
        ..Default::default()
    };
    let app = App::new(
        config(server, &prefix)
            .streams(defaults)
            .build()
            .expect("valid"),
    )
    .only(HANDLERS)
    .stream(
        "PROV",
        StreamSettings {
            max_age: Some(Duration::from_secs(3 * 86_400)),
            duplicate_window: Some(Duration::from_secs(600)),
            ..Default::default()
        },
    );
    app.start()
        .await
        .expect("starts")
        .shutdown()
        .await
        .expect("shutdown");
    let info = |name: String| {
        let js = js.clone();
        async move {
            js.get_stream(&name)
                .await
                .expect("stream")
                .cached_info()
                .config
                .clone()
        }
    };
    let prov = info(format!("{upper}_PROV")).await;
    assert_eq!(prov.max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(prov.duplicate_window, Duration::from_secs(600));
    assert_eq!(prov.max_bytes, 64 << 20);
    assert_eq!(
        prov.storage,
        async_nats::jetstream::stream::StorageType::Memory
    );
    let dlq = info(format!("{upper}_DLQ")).await;
    assert_eq!(dlq.max_bytes, 64 << 20);
    assert_eq!(dlq.max_age, Duration::ZERO);
    // Unset, the window covers the longest retry schedule of the app's
    // handlers: `prov_job`'s default one (a run of ack_wait per delivery
    // plus its backoff) is longer than NATS's 2-minute default.
    assert!(
        dlq.duplicate_window > Duration::from_secs(120)
            && dlq.duplicate_window <= Duration::from_secs(3600),
        "{:?}",
        dlq.duplicate_window
    );

    // Asking more of an existing stream changes nothing, and says so.
    let stricter = config(server, &prefix)
        .stream(
            "PROV",
            StreamSettings {
                max_age: Some(Duration::from_secs(30 * 86_400)),
                replicas: Some(1),
                ..Default::default()
            },
        )
        .build()
        .expect("valid");
    let logs = logs_of_a_run(stricter).await;
    assert!(
        logs.contains("weaker settings than asked") && logs.contains("max age is 259200s"),
        "{logs}"
    );
    assert_eq!(
        info(format!("{upper}_PROV")).await.max_age,
        Duration::from_secs(3 * 86_400)
    );
}

#[tokio::test]
async fn the_app_name_and_durables_are_logged_and_a_binary_name_warned_about() {
    let server = shared_server();
    let prefix = unique_prefix("app-name");
    let from_binary = Config::builder()
        .url(server.url())
        .subject_prefix(&prefix)
        .build()
        .expect("valid");
    let logs = logs_of_a_run(from_binary).await;
    assert!(
        logs.contains("starting") && logs.contains("prov_event"),
        "{logs}"
    );
    assert!(logs.contains("set JETWIRE_APP"), "{logs}");
}

/// Waits until the app's one handler acked a message, then shuts it down.
async fn one_acked_then_shutdown(running: jetwire::RunningApp) {
    eventually(Duration::from_secs(10), "the job done", || async {
        (running.stats()[0].acked == 1).then_some(())
    })
    .await;
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_publish_only_service_ensures_its_streams() {
    let server = shared_server();
    let prefix = unique_prefix("ensure");
    let upper = prefix.to_uppercase().replace('.', "_");
    let cfg = config(server, &prefix).build().expect("valid");
    let publisher = Publisher::connect(&cfg).await.expect("connect");
    // Nothing captures these yet: a publish fails.
    publisher
        .publish("invoices.sent", &1)
        .await
        .expect_err("no stream yet");
    let streams = publisher
        .ensure_streams(&["invoices.sent", "queue.invoice"])
        .await
        .expect("ensure");
    assert_eq!(
        streams,
        [format!("{upper}_INVOICES"), format!("{upper}_QUEUE")]
    );
    publisher
        .publish("invoices.sent", &1)
        .await
        .expect("stored");
    publisher
        .publish("queue.invoice", &1)
        .await
        .expect("stored");
    let client = publisher.client().clone();
    assert!(
        stream_names(&client)
            .await
            .contains(&format!("{upper}_DLQ"))
    );
    // Again: nothing new, the same answer.
    assert_eq!(
        publisher
            .ensure_streams(&["invoices.sent", "queue.invoice"])
            .await
            .expect("again"),
        streams
    );
    let bind = config(server, &unique_prefix("ensure-bind"))
        .provision(Provision::Bind)
        .build()
        .expect("valid");
    let err = Publisher::connect(&bind)
        .await
        .expect("connect")
        .ensure_streams(&["invoices.sent"])
        .await
        .expect_err("bind creates nothing");
    assert!(matches!(err, Error::NotProvisioned { .. }), "{err}");
}

#[tokio::test]
async fn an_app_and_a_publisher_on_a_connection_the_caller_made() {
    let server = shared_server();
    let prefix = unique_prefix("own-client");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let cfg = config(server, &prefix)
        .url("nats://127.0.0.1:1") // not used: the client is
        .build()
        .expect("valid");
    let running = App::new(cfg.clone())
        .only(&["prov_job"])
        .with_client(client.clone())
        .start()
        .await
        .expect("starts on the given client");
    let publisher = Publisher::from_client(client.clone(), &cfg);
    publisher
        .publish("queue.prov", &7u64)
        .await
        .expect("publish");
    one_acked_then_shutdown(running).await;
    // The caller's client stays open.
    client.flush().await.expect("still connected");
}

#[tokio::test]
async fn a_work_queue_on_a_stream_the_operator_made() {
    let server = Server::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let prefix = unique_prefix("legacy");
    let cfg = config(&server, &prefix).build().expect("valid");
    let make = |retention| async_nats::jetstream::stream::Config {
        name: "LEGACYJOBS".into(),
        subjects: vec![format!("{prefix}.legacyjobs.>")],
        retention,
        ..Default::default()
    };
    use async_nats::jetstream::stream::RetentionPolicy;
    js.create_stream(make(RetentionPolicy::Limits))
        .await
        .expect("create");
    let err = App::new(cfg.clone())
        .only(&["legacy_render"])
        .start()
        .await
        .expect_err("a limits stream is no work queue")
        .to_string();
    assert!(err.contains("not workqueue"), "{err}");
    js.delete_stream("LEGACYJOBS").await.expect("delete");
    js.create_stream(make(RetentionPolicy::WorkQueue))
        .await
        .expect("create");
    let running = App::new(cfg)
        .only(&["legacy_render"])
        .start()
        .await
        .expect("starts");
    running
        .publisher()
        .publish("legacyjobs.render", &1u64)
        .await
        .expect("publish");
    one_acked_then_shutdown(running).await;
    let left = stream_messages(&client, "LEGACYJOBS").await;
    assert!(left.is_empty(), "the work queue kept {} jobs", left.len());
}

#[queue("adoptjobs.render", stream = "ADOPTJOBS", bind = true)]
async fn adopted_render(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe(
    "adoptev.created",
    stream = "ADOPTEV",
    durable = "adopt-events",
    bind = true
)]
async fn adopted_event(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn bind_true_adopts_a_durable_as_it_is_and_reports_what_it_contradicts() {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let server = Server::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let prefix = unique_prefix("adopt");
    let cfg = config(&server, &prefix).build().expect("valid");
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ADOPTJOBS".into(),
            subjects: vec![format!("{prefix}.adoptjobs.>")],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("the operator's stream");
    let durable = jetwire::topology::durable_for(
        Some(&prefix),
        "prov",
        jetwire::registry::Kind::Queue,
        "adopted_render",
        "adoptjobs.render",
        None,
    );

    // Not there: startup fails naming it, and nothing is made.
    let err = App::new(cfg.clone())
        .only(&["adopted_render"])
        .start()
        .await
        .expect_err("no durable to adopt")
        .to_string();
    assert!(err.contains(&durable), "{err}");
    assert!(err.contains("remove `bind = true`"), "{err}");
    assert!(stream.consumer_info(&durable).await.is_err(), "made one");

    // Made elsewhere without explicit acks (on a stream that allows
    // that, not a work queue): refused.
    let events = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ADOPTEV".into(),
            subjects: vec![format!("{prefix}.adoptev.>")],
            ..Default::default()
        })
        .await
        .expect("the operator's event stream");
    events
        .create_consumer(pull::Config {
            durable_name: Some(jetwire::topology::durable_for(
                Some(&prefix),
                "prov",
                jetwire::registry::Kind::Subscribe,
                "adopted_event",
                "adoptev.created",
                Some("adopt-events"),
            )),
            filter_subject: format!("{prefix}.adoptev.created"),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("their durable without acks");
    let err = App::new(cfg.clone())
        .only(&["adopted_event"])
        .start()
        .await
        .expect_err("a durable without acks")
        .to_string();
    assert!(err.contains("needs explicit acks"), "{err}");

    // Made elsewhere as it should be: adopted, never changed, each
    // contradicted option reported.
    let theirs = pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: format!("{prefix}.adoptjobs.render"),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(7),
        max_deliver: 40,
        max_ack_pending: 8,
        ..Default::default()
    };
    stream.create_consumer(theirs).await.expect("their durable");
    let (logs, guard) = capture_logs();
    let running = App::new(cfg)
        .only(&["adopted_render"])
        .start()
        .await
        .expect("starts on the adopted durable");
    drop(guard);
    running
        .publisher()
        .publish("adoptjobs.render", &1u64)
        .await
        .expect("publish");
    one_acked_then_shutdown(running).await;
    let logs = String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned();
    for contradiction in [
        "`bind = true`: its ack_wait is 7s, the handler's 30s",
        "`bind = true`: its max_deliver is 40",
        "`bind = true`: its max_ack_pending is 8",
        "`bind = true`: it lacks the metadata naming its handler",
    ] {
        assert!(
            logs.contains(contradiction),
            "{contradiction:?} in:\n{logs}"
        );
    }
    let info = stream.consumer_info(&durable).await.expect("still there");
    assert_eq!(
        info.config.ack_wait,
        Duration::from_secs(7),
        "never updated"
    );
    assert_eq!(info.config.max_deliver, 40, "never updated");
    assert_eq!(info.config.max_ack_pending, 8, "never updated");
}
