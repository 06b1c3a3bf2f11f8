//! Signals against a real server: a handler waiting for one gets it when
//! it is sent, one sent before the wait began is not lost, a wait that
//! times out is retried and, at the last run, dead-lettered; in `TestApp`
//! too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::testing::TestApp;
use jetwire::{App, Config, Context, HandlerError, PublishOptions, State, queue};
use jetwire_tests::{eventually, shared_server, unique_prefix};

/// What approvals the handler received, by job.
#[derive(Clone, Default)]
struct Approved(Arc<Mutex<Vec<(u64, String)>>>);

#[queue("queue.sigpay", max_deliver = 2, backoff = ["10ms"])]
async fn sig_pay(job: u64, ctx: Context, approved: State<Approved>) -> Result<(), HandlerError> {
    let wait = if job >= 100 {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(30)
    };
    let who: String = ctx.wait_for_signal("approved", wait).await?;
    approved.0.0.lock().expect("lock").push((job, who));
    Ok(())
}

fn config(prefix: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("sig")
        .subject_prefix(prefix)
        .build()
        .expect("valid")
}

#[tokio::test]
async fn a_waiting_handler_gets_its_signal_sent_before_or_after_the_wait() {
    let prefix = unique_prefix("sig");
    let approved = Approved::default();
    let running = App::new(config(&prefix))
        .only(&["sig_pay"])
        .state(approved.clone())
        .start()
        .await
        .expect("starts");
    let publisher = running.publisher();
    let with_id = |id: &str| PublishOptions::new().message_id(id);

    // Sent after the handler began to wait.
    publisher
        .publish_with("queue.sigpay", &1u64, with_id("pay-1"))
        .await
        .expect("publish");
    eventually(Duration::from_secs(10), "the handler waiting", || async {
        (running.stats()[0].received == 1).then_some(())
    })
    .await;
    assert!(approved.0.lock().expect("lock").is_empty(), "still waiting");
    publisher
        .signal("pay-1", "approved", &"alice")
        .await
        .expect("signal");

    // Sent before the message was even published.
    publisher
        .signal("pay-2", "approved", &"bob")
        .await
        .expect("signal");
    publisher
        .publish_with("queue.sigpay", &2u64, with_id("pay-2"))
        .await
        .expect("publish");

    // Never sent: two runs time out, then the message is dead-lettered.
    publisher
        .publish_with("queue.sigpay", &100u64, with_id("pay-100"))
        .await
        .expect("publish");
    eventually(
        Duration::from_secs(20),
        "two approved, one dead-lettered",
        || async {
            let s = &running.stats()[0];
            (s.acked == 2 && s.dead_lettered == 1).then_some(())
        },
    )
    .await;
    let mut got = approved.0.lock().expect("lock").clone();
    got.sort();
    assert_eq!(got, vec![(1, "alice".to_owned()), (2, "bob".to_owned())]);
    assert_eq!(
        running.stats()[0].retried,
        1,
        "the timeout was retried once"
    );
    let letters = running
        .dead_letters()
        .list(&jetwire::dlq::Filter::new())
        .await
        .expect("list");
    assert!(
        letters[0]
            .error()
            .unwrap_or_default()
            .contains("did not come within"),
        "{:?}",
        letters[0].error()
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn testapp_delivers_signals_sent_in_the_test() {
    let approved = Approved::default();
    let app = TestApp::new().only(&["sig_pay"]).state(approved.clone());
    app.signal("pay-7", "approved", &"carol");
    let report = app
        .publish_with(
            "queue.sigpay",
            &7u64,
            PublishOptions::new().message_id("pay-7"),
        )
        .await;
    assert!(report.acked());
    let missing = app
        .publish_with(
            "queue.sigpay",
            &8u64,
            PublishOptions::new().message_id("pay-8"),
        )
        .await;
    assert_eq!(missing.dlq_reason(), Some(jetwire::DlqReason::Exhausted));
    assert_eq!(
        approved.0.lock().expect("lock").clone(),
        vec![(7, "carol".to_owned())]
    );
}

static FANOUT_DONE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

#[jetwire::subscribe("sigfan.created", max_deliver = 1)]
async fn sig_billing(_n: u64, ctx: Context) -> Result<(), HandlerError> {
    let _: String = ctx
        .wait_for_signal("approved", Duration::from_secs(10))
        .await?;
    FANOUT_DONE.lock().expect("lock").push("billing");
    Ok(())
}

#[jetwire::subscribe("sigfan.created", max_deliver = 1)]
async fn sig_audit(_n: u64, ctx: Context) -> Result<(), HandlerError> {
    // Starts to wait well after billing has its signal and settles.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _: String = ctx
        .wait_for_signal("approved", Duration::from_secs(10))
        .await?;
    FANOUT_DONE.lock().expect("lock").push("audit");
    Ok(())
}

/// An event reaches two apps that both wait for one signal: the first to
/// settle does not take it from the other.
#[tokio::test]
async fn every_app_a_message_reaches_gets_its_signal() {
    let prefix = unique_prefix("sigfan");
    let app = |name: &str, handler: &'static str| {
        App::new(jetwire_tests::config(shared_server(), &prefix, name))
            .only(&[handler])
            .start()
    };
    let billing = app("billing", "sig_billing").await.expect("starts");
    let audit = app("audit", "sig_audit").await.expect("starts");
    let publisher = billing.publisher();
    publisher
        .publish_with(
            "sigfan.created",
            &1u64,
            PublishOptions::new().message_id("fan-1"),
        )
        .await
        .expect("publish");
    publisher
        .signal("fan-1", "approved", &"dana")
        .await
        .expect("signal");
    eventually(Duration::from_secs(20), "both apps acked", || async {
        (FANOUT_DONE.lock().expect("lock").len() == 2).then_some(())
    })
    .await;
    assert_eq!(audit.stats()[0].dead_lettered, 0);
    billing.shutdown().await.expect("stops");
    audit.shutdown().await.expect("stops");
}

/// A message id of 5,000 bytes (an outside one) makes a key the server
/// takes: sending and waiting work, and the connection is never dropped.
/// A signal left from long before a message with the same id is not its.
#[tokio::test]
async fn a_long_id_keeps_the_connection_and_an_old_signal_is_not_a_new_messages() {
    let prefix = unique_prefix("siglong");
    let approved = Approved::default();
    let running = App::new(config(&prefix))
        .only(&["sig_pay"])
        .state(approved.clone())
        .start()
        .await
        .expect("starts");
    let publisher = running.publisher();
    let connects = publisher
        .client()
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed);
    let long = format!("id-{}", ".".repeat(5000));
    publisher
        .signal(&long, "approved", &"erin")
        .await
        .expect("a long id is signalled");
    publisher
        .publish_with(
            "queue.sigpay",
            &3u64,
            PublishOptions::new().message_id(&long),
        )
        .await
        .expect("publish");
    eventually(Duration::from_secs(20), "the long id approved", || async {
        approved
            .0
            .lock()
            .expect("lock")
            .contains(&(3, "erin".to_owned()))
            .then_some(())
    })
    .await;

    // Sent for an id, 3 s before a message with that id is published.
    publisher
        .signal("pay-stale", "approved", &"mallory")
        .await
        .expect("signal");
    tokio::time::sleep(Duration::from_secs(3)).await;
    publisher
        .publish_with(
            "queue.sigpay",
            &101u64,
            PublishOptions::new().message_id("pay-stale"),
        )
        .await
        .expect("publish");
    eventually(
        Duration::from_secs(20),
        "the stale signal refused",
        || async { (running.stats()[0].dead_lettered == 1).then_some(()) },
    )
    .await;
    assert!(
        !approved
            .0
            .lock()
            .expect("lock")
            .iter()
            .any(|(j, _)| *j == 101),
        "an old signal approved a new message"
    );
    assert_eq!(
        publisher
            .client()
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        connects,
        "the connection was dropped"
    );
    running.shutdown().await.expect("clean shutdown");
}
