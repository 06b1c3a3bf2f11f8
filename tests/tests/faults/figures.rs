//! Publishing numbered messages, waiting for them, and reading what
//! became of them into a scenario's figures.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use jetwire::{App, PublishOptions, Publisher};
use jetwire_tests::{Ledger, Server, config, header, stream_messages, unique_prefix};

use crate::handlers::{Delay, Job};

/// One scenario's figures.
pub(crate) struct Figures {
    pub(crate) published: u64,
    pub(crate) handled_unique: u64,
    pub(crate) duplicates: u64,
    pub(crate) dlq: u64,
    pub(crate) dlq_duplicates: u64,
    pub(crate) recovery_s: f64,
}

impl Figures {
    /// Messages neither handled nor dead-lettered.
    fn lost(&self) -> u64 {
        self.published
            .saturating_sub(self.handled_unique + (self.dlq - self.dlq_duplicates))
    }
}

/// Publishes ids in order, each retried with its message id until stored;
/// returns the longest wait, in seconds, for one message to be stored.
pub(crate) async fn publish_numbered(
    publisher: &Publisher,
    subject: &str,
    scenario: &str,
    ids: std::ops::Range<u64>,
) -> f64 {
    let mut longest: f64 = 0.0;
    for id in ids {
        let opts = || PublishOptions::new().message_id(format!("{scenario}-{id}"));
        let t0 = Instant::now();
        // The server may be down or frozen: retry with the same id until stored.
        while publisher
            .publish_with(subject, &Job { id }, opts())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        longest = longest.max(t0.elapsed().as_secs_f64());
    }
    longest
}

pub(crate) async fn wait_for(ledger: &Ledger, n: u64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let (unique, _) = ledger.tally().await;
        if unique >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {unique} of {n} handled after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds until the ledger grows past `before`, measured from now.
pub(crate) async fn recovery(ledger: &Ledger, before: u64, timeout: Duration) -> f64 {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if ledger.tally().await.0 > before {
            return t0.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    timeout.as_secs_f64()
}

/// The longest time, in seconds, in which the ledger did not grow, from
/// now until it holds `target` messages.
pub(crate) async fn longest_stall(
    ledger: &Ledger,
    target: u64,
    timeout: Duration,
) -> Result<f64, String> {
    let t0 = Instant::now();
    let (mut last, mut last_change, mut longest) = (ledger.tally().await.0, Instant::now(), 0f64);
    while last < target {
        if t0.elapsed() > timeout {
            return Err(format!("only {last} of {target} handled after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = ledger.tally().await.0;
        if now > last {
            longest = longest.max(last_change.elapsed().as_secs_f64());
            last = now;
            last_change = Instant::now();
        }
    }
    Ok(longest)
}

/// Waits until all `n` messages are handled, or `timeout` passes, then
/// reads the ledger and the dead-letter stream into the scenario's
/// figures: what is missing then shows as `lost=N`, a number, not a hang.
pub(crate) async fn settled(
    ledger: &Ledger,
    client: &async_nats::Client,
    prefix: &str,
    n: u64,
    timeout: Duration,
    recovery_s: f64,
) -> Figures {
    // A shortfall at the deadline is counted below, as lost.
    let _ = wait_for(ledger, n, timeout).await;
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(client, prefix).await;
    Figures {
        published: n,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s,
    }
}

pub(crate) async fn dlq_figures(client: &async_nats::Client, prefix: &str) -> (u64, u64) {
    let letters = stream_messages(client, &jetwire_tests::dlq_stream(prefix)).await;
    let mut keys: Vec<String> = letters
        .iter()
        .map(|m| {
            format!(
                "{:?}:{:?}",
                header(m, "Jetwire-Dlq-Stream"),
                header(m, "Jetwire-Dlq-Sequence")
            )
        })
        .collect();
    let total = keys.len() as u64;
    keys.sort();
    keys.dedup();
    (total, total - keys.len() as u64)
}

pub(crate) fn run_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    )
}

/// Messages through the main queue while `fault` runs at about a third
/// and two thirds of the way.
pub(crate) async fn through_faults(
    name: &str,
    (subject, handler): (&'static str, &'static str),
    n: u64,
    faults: impl Fn(usize, &mut Server) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> + Send,
    fault_count: usize,
) -> Result<Figures, String> {
    through_faults_on(
        Server::start(),
        name,
        (subject, handler),
        n,
        faults,
        fault_count,
    )
    .await
}

/// [`through_faults`] on a server of the caller's.
pub(crate) async fn through_faults_on(
    mut server: Server,
    name: &str,
    (subject, handler): (&'static str, &'static str),
    n: u64,
    faults: impl Fn(usize, &mut Server) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> + Send,
    fault_count: usize,
) -> Result<Figures, String> {
    let prefix = unique_prefix(name);
    let ledger = Ledger::connect(&run_id(), name).await;
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&[handler])
        .state(ledger.clone())
        .state(Delay {
            per_call: Duration::from_millis(2),
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let pubs = {
        let publisher = publisher.clone();
        let name = name.to_owned();
        tokio::spawn(async move { publish_numbered(&publisher, subject, &name, 0..n).await })
    };
    let mut recovery_s: f64 = 0.0;
    for k in 0..fault_count {
        let target = n * (k as u64 + 1) / (fault_count as u64 + 1);
        wait_for(&ledger, target, Duration::from_secs(120)).await?;
        faults(k, &mut server).await;
        // From the moment the server is back to the first message handled after it.
        let back = ledger.tally().await.0;
        recovery_s = recovery_s.max(recovery(&ledger, back, Duration::from_secs(60)).await);
    }
    pubs.await.map_err(|e| e.to_string())?;
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
    drop(server);
    Ok(f)
}

pub(crate) fn line(name: &str, f: &Figures) -> String {
    format!(
        "fault {name}: published={} handled_unique={} lost={} duplicates={} dlq={} recovery_s={:.2}",
        f.published,
        f.handled_unique,
        f.lost(),
        f.duplicates,
        f.dlq,
        f.recovery_s
    )
}

pub(crate) fn check(name: &str, f: &Figures, expected_dlq: u64) -> Result<String, String> {
    let l = line(name, f);
    if f.lost() != 0 {
        return Err(format!("{l}: messages lost"));
    }
    if f.dlq != expected_dlq {
        return Err(format!("{l}: expected {expected_dlq} dead letters"));
    }
    if f.dlq_duplicates != 0 {
        return Err(format!("{l}: {} duplicate dead letters", f.dlq_duplicates));
    }
    Ok(l)
}
