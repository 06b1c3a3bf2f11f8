//! A `concurrency = 1` handler keeps its messages in order across
//! replicas: its durable lets the server hand out one unacknowledged
//! message at a time (`max_ack_pending = 1`), however many replicas pull
//! and however far ahead each asks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, Context, State, queue};
use jetwire_tests::{config, eventually, shared_server, unique_prefix};

/// The ids as they were handled, with the replica that handled each.
#[derive(Clone, Default)]
struct Handled(Arc<Mutex<Vec<(u64, &'static str)>>>);

#[derive(Clone, Copy)]
struct Replica(&'static str);

#[queue("queue.ord-one", concurrency = 1)]
async fn in_order(n: u64, handled: State<Handled>, replica: State<Replica>, ctx: Context) {
    let _ = ctx;
    // Long enough that the other replica's pulls wait on the server.
    tokio::time::sleep(Duration::from_millis(2)).await;
    handled
        .0
        .0
        .lock()
        .expect("not poisoned")
        .push((n, replica.0.0));
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout)]
async fn two_replicas_of_a_concurrency_1_handler_keep_the_order() {
    const N: u64 = 300;
    let prefix = unique_prefix("ord");
    let handled = Handled::default();
    let start = |name: &'static str| {
        App::new(config(shared_server(), &prefix, "ord"))
            .only(&["in_order"])
            .state(handled.clone())
            .state(Replica(name))
            .start()
    };
    let a = start("a").await.expect("replica a starts");
    let b = start("b").await.expect("replica b starts");
    let publisher = a.publisher();
    for n in 0..N {
        publisher
            .publish("queue.ord-one", &n)
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(60), "every message handled", || async {
        (handled.0.lock().expect("not poisoned").len() as u64 >= N).then_some(())
    })
    .await;
    a.shutdown().await.expect("shutdown a");
    b.shutdown().await.expect("shutdown b");
    let handled = handled.0.lock().expect("not poisoned").clone();
    let ids: Vec<u64> = handled.iter().map(|(n, _)| *n).collect();
    assert_eq!(ids, (0..N).collect::<Vec<_>>(), "handled out of order");
    let by_b = handled.iter().filter(|(_, r)| *r == "b").count();
    println!(
        "order kept across 2 replicas: {} by a, {by_b} by b",
        handled.len() - by_b
    );
}
