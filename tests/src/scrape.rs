//! Reading what a running app serves over HTTP: `/healthz`, `/readyz`
//! and `/metrics`, with a real HTTP client, and the Prometheus text
//! parsed sample by sample.

use std::net::SocketAddr;
use std::time::Duration;

/// `GET http://addr/path`: the status and the body; `None` when nothing
/// answered (not listening yet, or gone).
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The body of `GET /metrics`, asserting it answered 200.
pub async fn metrics(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    body
}

/// One sample of a Prometheus text exposition: its value, if a line has
/// this metric name and every label given (others may be present).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let has_all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            (metric == name && has_all).then(|| value.parse().ok())?
        })
}

/// `jetwire_messages_settled_total` of `handler` with `outcome`.
pub fn settled(text: &str, handler: &str, outcome: &str) -> Option<f64> {
    sample(
        text,
        "jetwire_messages_settled_total",
        &[("handler", handler), ("outcome", outcome)],
    )
}

/// The sum of every sample of `name` with these labels.
pub fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|line| sample(line, name, labels))
        .sum()
}
