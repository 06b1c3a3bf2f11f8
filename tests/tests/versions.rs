//! Payload versions and envelopes, live and in `TestApp`: the version a
//! publisher set reaches the handler, stays with a dead letter, and comes
//! back with a replay; an envelope decodes as a handler's payload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::dlq::{DeadLetters, Filter};
use jetwire::testing::TestApp;
use jetwire::{App, Context, Envelope, HandlerError, PublishOptions, State, queue};
use jetwire_tests::{config, eventually, shared_server, unique_prefix};

/// What one call saw: the header's version, the envelope's, its payload.
type Call = (Option<String>, String, u64);

/// Every call's.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn all(&self) -> Vec<Call> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Refuses payload 13 for good; takes any other.
#[queue("queue.versioned")]
async fn versioned(
    job: Envelope<u64>,
    calls: State<Calls>,
    ctx: Context,
) -> Result<(), HandlerError> {
    let seen = (ctx.version().map(str::to_owned), job.version, job.payload);
    calls.0.0.lock().expect("not poisoned").push(seen);
    match job.payload {
        13 => Err(HandlerError::permanent("unlucky")),
        _ => Ok(()),
    }
}

fn v(version: &str) -> PublishOptions {
    PublishOptions::new().version(version)
}

#[tokio::test]
async fn a_version_reaches_the_handler_stays_with_its_letter_and_comes_back_replayed() {
    let prefix = unique_prefix("versions");
    let calls = Calls::default();
    let cfg = config(shared_server(), &prefix, "versions");
    let app = App::new(cfg.clone())
        .only(&["versioned"])
        .state(calls.clone())
        .start()
        .await
        .expect("app starts");
    let publisher = app.publisher();
    publisher
        .publish_with("queue.versioned", &Envelope::new("2", 7u64), v("2"))
        .await
        .expect("published");
    publisher
        .publish_with("queue.versioned", &Envelope::new("3", 13u64), v("3"))
        .await
        .expect("published");
    publisher
        .publish("queue.versioned", &Envelope::new("1", 1u64))
        .await
        .expect("published");
    let letters = DeadLetters::connect(&cfg).await.expect("dead letters");
    let letter = eventually(Duration::from_secs(15), "one dead letter", || async {
        letters.list(&Filter::new()).await.ok()?.into_iter().next()
    })
    .await;
    assert_eq!(letter.version(), Some("3"));
    letters.replay(letter.sequence()).await.expect("replayed");
    eventually(Duration::from_secs(15), "four calls", || async {
        (calls.all().len() >= 4).then_some(())
    })
    .await;
    app.shutdown().await.expect("clean shutdown");
    let mut all = calls.all();
    all.sort_by_key(|c| c.2);
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        all,
        [
            (None, "1".to_owned(), 1),
            (some("2"), "2".to_owned(), 7),
            (some("3"), "3".to_owned(), 13),
            (some("3"), "3".to_owned(), 13),
        ],
        "the replay carries the version"
    );
}

#[tokio::test]
async fn a_version_reaches_the_handler_and_its_letter_in_test_app() {
    let calls = Calls::default();
    let app = TestApp::new().only(&["versioned"]).state(calls.clone());
    let report = app
        .publish_with("queue.versioned", &Envelope::new("3", 13u64), v("3"))
        .await;
    assert!(report.dead_lettered());
    assert_eq!(calls.all(), [(Some("3".to_owned()), "3".to_owned(), 13)]);
    let letters = app.dead_letters();
    assert_eq!(letters[0].header("Jetwire-Version"), Some("3"));
    // Not an envelope: a decode letter, the handler not called.
    let report = app.publish("queue.versioned", &13u64).await;
    assert_eq!(report.dlq_reason(), Some(jetwire::DlqReason::Decode));
    assert_eq!(calls.all().len(), 1);
}
