//! What the pull loop asks the server for: a message as large as the
//! server takes is delivered, whatever the loop's own byte budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Publisher, Raw, State, queue};
use jetwire_tests::{Server, config, eventually, unique_prefix};

#[derive(Clone, Default)]
struct Sizes(Arc<Mutex<Vec<usize>>>);

#[queue("queue.pull-large")]
async fn pull_large(raw: Raw, State(sizes): State<Sizes>) {
    sizes.0.lock().expect("not poisoned").push(raw.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_larger_than_eight_mib_is_delivered() {
    let server = Server::start_with_config("max_payload: 16MB\nmax_pending: 64MB");
    let prefix = unique_prefix("pull-large");
    let sizes = Sizes::default();
    let app = App::new(config(&server, &prefix, "pull"))
        .only(&["pull_large"])
        .state(sizes.clone())
        .start()
        .await
        .expect("start");
    let publisher = Publisher::connect(&config(&server, &prefix, "pull"))
        .await
        .expect("connect");
    let large = vec![b'x'; 10 << 20];
    publisher
        .publish_raw("queue.pull-large", large, Default::default())
        .await
        .expect("stored");
    publisher
        .publish_raw("queue.pull-large", &b"small"[..], Default::default())
        .await
        .expect("stored");
    let seen = eventually(Duration::from_secs(20), "both messages", || {
        let sizes = sizes.clone();
        async move {
            let seen = sizes.0.lock().expect("not poisoned").clone();
            (seen.len() >= 2).then_some(seen)
        }
    })
    .await;
    assert_eq!(seen, [10 << 20, 5]);
    app.shutdown().await.expect("shutdown");
}
