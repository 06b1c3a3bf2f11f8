//! What the `metrics` and `otel` features cost: built with
//! `--features metrics`, every jetwire app in the run serves `/metrics`
//! (so jetwire's Prometheus recorder records everything); with
//! `--features otel`, a tracing subscriber with an OpenTelemetry layer
//! records every handler span and hands it to a batch exporter that
//! discards it. Compare a run with the feature to one without.

/// What this build observes, for the run's header line.
pub(crate) fn describe() -> String {
    let mut on = Vec::new();
    if cfg!(feature = "metrics") {
        on.push("metrics (Prometheus recorder)");
    }
    if cfg!(feature = "otel") {
        on.push("otel (spans exported to a discarding batch exporter)");
    }
    if on.is_empty() {
        "none".to_owned()
    } else {
        on.join(", ")
    }
}

/// Installs the span pipeline, with feature `otel`; `OTEL_LAYER=0` leaves
/// it out, to measure jetwire's own part (reading and writing trace
/// headers) apart from the layer's.
pub(crate) fn install() {
    #[cfg(feature = "otel")]
    if std::env::var("OTEL_LAYER").as_deref() != Ok("0") {
        otel::install();
    }
}

/// Where jetwire apps serve `/metrics`, with feature `metrics`.
pub(crate) fn http_addr() -> Option<std::net::SocketAddr> {
    cfg!(feature = "metrics").then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    /// Takes every batch and keeps nothing.
    #[derive(Debug)]
    struct Discard;

    impl SpanExporter for Discard {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    pub(super) fn install() {
        // `OTEL_SAMPLE=0.01` keeps one trace in a hundred, as a busy
        // service would; every span by default.
        let ratio: f64 = std::env::var("OTEL_SAMPLE")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1.0);
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_batch_exporter(Discard)
            .build();
        // What a busy service turns off: source locations, threads and
        // targets as attributes, busy/idle time, and activating the
        // OpenTelemetry context at every poll of every handler's future.
        let layer = tracing_opentelemetry::layer()
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_tracer(provider.tracer("jetwire-bench"))
            .with_filter(LevelFilter::INFO);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        // Lives for the whole run.
        std::mem::forget(provider);
    }
}
