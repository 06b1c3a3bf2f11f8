//! The Prometheus text exposition behind `/metrics` (feature `metrics`).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::metrics::DURATION;

/// Call durations, in seconds: a millisecond to a minute.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// jetwire's Prometheus recorder, installed as the process's `metrics`
/// recorder the first time it is asked for. `None` when the process had
/// already installed a recorder of its own: metrics then go there, and
/// `/metrics` says so.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), DURATION_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::info!(error = %e, "a metrics recorder is installed already: jetwire's metrics go to it, and /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The exposition text now.
pub(crate) fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

/// How long one rendering answers every scrape: a scraper asks every few
/// seconds, a flood of requests renders once this often.
const FRESH: Duration = Duration::from_millis(200);

/// The exposition text, rendered at most once per [`FRESH`]; scrapes that
/// come while it renders wait for that rendering.
pub(crate) fn rendered(handle: &PrometheusHandle) -> Bytes {
    static LAST: Mutex<Option<(Instant, Bytes)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, body)) = &*last
        && at.elapsed() < FRESH
    {
        return body.clone();
    }
    let body = Bytes::from(render(handle));
    *last = Some((Instant::now(), body.clone()));
    body
}
