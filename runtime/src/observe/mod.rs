//! What an operator sees: health and readiness (`health`), metrics
//! (`metrics`, and their Prometheus exposition), trace context on the
//! wire (`trace`), and the HTTP listener serving them (`http`).
//!
//! Without the `metrics` and `otel` features, `metrics` and `trace` are
//! empty functions the compiler removes.

pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod metrics;
#[cfg(feature = "metrics")]
mod prometheus;
pub(crate) mod trace;
