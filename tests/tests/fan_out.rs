//! Events fan out to every app and are shared by an app's replicas; a
//! work-queue job is done once, whatever the number of apps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetwire::{App, RunningApp, State, queue, subscribe};
use jetwire_tests::{config, eventually, shared_server, unique_prefix};

/// How many times each message number was handled, per app.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<HashMap<u64, u32>>>);

impl Tally {
    fn add(&self, n: u64) {
        *self.0.lock().expect("not poisoned").entry(n).or_default() += 1;
    }
    fn total(&self) -> u32 {
        self.0.lock().expect("not poisoned").values().sum()
    }
    fn distinct(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
    fn max(&self) -> u32 {
        self.0
            .lock()
            .expect("not poisoned")
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

/// Which app instance a call runs in.
#[derive(Clone, Copy)]
struct Replica(&'static str);

/// Opens once both billing replicas have started a call, so that sharing
/// does not hang on scheduling luck: until then the first replica's calls
/// wait, it stops pulling once its places are full (far fewer than the
/// events), and the rest can only go to the other replica.
#[derive(Clone)]
struct BothStarted {
    needs: &'static [&'static str],
    seen: Arc<(Mutex<Vec<&'static str>>, tokio::sync::Notify)>,
}

impl BothStarted {
    fn of(needs: &'static [&'static str]) -> Self {
        BothStarted {
            needs,
            seen: Arc::new((Mutex::new(Vec::new()), tokio::sync::Notify::new())),
        }
    }
    async fn started(&self, replica: &'static str) {
        let (seen, opened) = &*self.seen;
        {
            let mut seen = seen.lock().expect("not poisoned");
            if !seen.contains(&replica) {
                seen.push(replica);
            }
        }
        loop {
            let wait = opened.notified();
            let open = {
                let seen = seen.lock().expect("not poisoned");
                self.needs.iter().all(|n| seen.contains(n))
            };
            if open {
                opened.notify_waiters();
                return;
            }
            wait.await;
        }
    }
}

#[subscribe("fan.created", deliver = "all", concurrency = 4)]
async fn on_created(
    n: u64,
    tally: State<Tally>,
    replica: State<Replica>,
    gate: State<BothStarted>,
) {
    gate.started(replica.0.0).await;
    tally.add(n);
}

#[queue("queue.fan-job", concurrency = 4)]
async fn do_job(n: u64, tally: State<Tally>) {
    tally.add(n);
}

async fn app(prefix: &str, name: &str, handler: &str, tally: &Tally) -> RunningApp {
    replica(prefix, name, handler, tally, "-", &BothStarted::of(&[])).await
}

async fn replica(
    prefix: &str,
    name: &str,
    handler: &str,
    tally: &Tally,
    replica: &'static str,
    gate: &BothStarted,
) -> RunningApp {
    App::new(config(shared_server(), prefix, name))
        .only(&[handler])
        .state(tally.clone())
        .state(Replica(replica))
        .state(gate.clone())
        .start()
        .await
        .expect("app starts")
}

async fn until(what: &str, done: impl Fn() -> bool) {
    eventually(Duration::from_secs(20), what, || {
        let ok = done();
        async move { ok.then_some(()) }
    })
    .await;
}

const N: u64 = 300;

#[tokio::test]
async fn every_app_gets_a_copy_and_replicas_share() {
    let prefix = unique_prefix("fan");
    let (billing, shipping) = (Tally::default(), Tally::default());
    let gate = BothStarted::of(&["b1", "b2"]);
    let b1 = replica(&prefix, "billing", "on_created", &billing, "b1", &gate).await;
    let b2 = replica(&prefix, "billing", "on_created", &billing, "b2", &gate).await;
    let s1 = replica(&prefix, "shipping", "on_created", &shipping, "s1", &gate).await;
    let publisher = b1.publisher();
    for n in 0..N {
        publisher
            .publish("fan.created", &n)
            .await
            .expect("published");
    }
    until("billing to see every event", || {
        billing.distinct() == N as usize
    })
    .await;
    until("shipping to see every event", || {
        shipping.distinct() == N as usize
    })
    .await;
    // Both billing replicas took part, and together saw each event once.
    let (r1, r2) = (b1.stats()[0].acked, b2.stats()[0].acked);
    for app in [b1, b2, s1] {
        app.shutdown().await.expect("clean shutdown");
    }
    assert_eq!(billing.total(), N as u32, "no event twice within one app");
    assert_eq!(shipping.total(), N as u32);
    assert_eq!(r1 + r2, N);
    assert!(r1 > 0 && r2 > 0, "replicas share the work: {r1} + {r2}");
}

#[tokio::test]
async fn a_job_is_done_once_across_apps() {
    let prefix = unique_prefix("job");
    let tally = Tally::default();
    let a = app(&prefix, "mailer", "do_job", &tally).await;
    let b = app(&prefix, "other-app", "do_job", &tally).await;
    let publisher = a.publisher();
    for n in 0..N {
        publisher
            .publish("queue.fan-job", &n)
            .await
            .expect("published");
    }
    until("every job", || tally.distinct() == N as usize).await;
    let (ra, rb) = (a.stats()[0].acked, b.stats()[0].acked);
    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
    assert_eq!(tally.max(), 1, "each job once");
    assert_eq!(ra + rb, N);
    assert!(
        ra > 0 && rb > 0,
        "both apps worked the one queue: {ra} + {rb}"
    );
}

#[tokio::test]
async fn prefixes_isolate_deployments() {
    let (p1, p2) = (unique_prefix("iso-a"), unique_prefix("iso-b"));
    let (t1, t2) = (Tally::default(), Tally::default());
    let a = app(&p1, "svc", "on_created", &t1).await;
    let b = app(&p2, "svc", "on_created", &t2).await;
    for n in 0..10u64 {
        a.publisher()
            .publish("fan.created", &n)
            .await
            .expect("published");
    }
    b.publisher()
        .publish("fan.created", &99u64)
        .await
        .expect("published");
    until("both to settle", || {
        t1.distinct() == 10 && t2.distinct() == 1
    })
    .await;
    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
    assert!(!t1.0.lock().expect("not poisoned").contains_key(&99));
    assert_eq!(
        t2.0.lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [99]
    );
}
