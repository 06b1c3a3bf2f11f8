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
    use tracing_subscriber::filter::{LevelFilter, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;

    /// Takes every batch and keeps nothing.
    #[derive(Debug)]
    struct Discard;

    impl SpanExporter for Discard {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    /// Spans sampled `ratio` of the time (by trace id, a parent's choice
    /// kept), exported in batches to [`Discard`].
    fn provider(ratio: f64) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_batch_exporter(Discard)
            .build()
    }

    /// What a busy service turns off: source locations, threads and
    /// targets as attributes, busy/idle time, and activating the
    /// OpenTelemetry context at every poll of every handler's future.
    /// `OTEL_SKIP_JETWIRE=1` keeps jetwire's own spans from the layer.
    fn subscriber(provider: &SdkTracerProvider) -> impl tracing::Subscriber + Send + Sync {
        let skip_jetwire = std::env::var("OTEL_SKIP_JETWIRE").as_deref() == Ok("1");
        let layer = tracing_opentelemetry::layer()
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_tracer(provider.tracer("jetwire-bench"))
            .with_filter(LevelFilter::INFO)
            .with_filter(skip_jetwire.then(|| filter_fn(|m| !m.target().starts_with("jetwire"))));
        tracing_subscriber::registry().with(layer)
    }

    pub(super) fn install() {
        // `OTEL_SAMPLE=0.01` keeps one trace in a hundred, as a busy
        // service would; every span by default.
        let ratio: f64 = std::env::var("OTEL_SAMPLE")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1.0);
        let provider = provider(ratio);
        tracing::subscriber::set_global_default(subscriber(&provider))
            .expect("the only subscriber");
        // Lives for the whole run.
        std::mem::forget(provider);
    }

    /// Nanoseconds per call of `f`, over `n` calls.
    fn per_call(n: u64, mut f: impl FnMut(u64)) -> f64 {
        let t0 = std::time::Instant::now();
        for i in 0..n {
            f(i);
        }
        t0.elapsed().as_nanos() as f64 / n as f64
    }

    /// One handler span's cost on this thread, in ns: a `jetwire.handle`
    /// span with jetwire's fields through `tracing-opentelemetry` (the
    /// `raw=` side), against the same span started through the
    /// OpenTelemetry API, whose sampler decides before anything is built
    /// and whose attributes are set only on a span that records.
    pub(super) fn span_costs(n: u64) -> Vec<(f64, f64, f64)> {
        let mut costs = Vec::new();
        use opentelemetry::KeyValue;
        use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
        for ratio in [0.01, 1.0] {
            let provider = provider(ratio);
            let layered = tracing::subscriber::with_default(subscriber(&provider), || {
                per_call(n, |i| {
                    let span = tracing::info_span!(
                        "jetwire.handle",
                        handler = "bench_event",
                        stream = "BENCH",
                        sequence = i,
                        delivery = 1,
                        otel.name = format_args!("process {}", "bench.bev.data"),
                        otel.kind = "consumer",
                        messaging.system = "nats",
                        messaging.operation.type = "process",
                        messaging.destination.name = "bench.bev.data",
                        messaging.message.id = "0192f0c4-7a4e-7c1d-9b1e-3a3f5d7c9e11",
                        messaging.consumer.group.name = "bench-bench_event",
                    );
                    let _entered = span.enter();
                })
            });
            let tracer = provider.tracer("jetwire-bench");
            let direct = per_call(n, |i| {
                let mut span = tracer
                    .span_builder("process bench.bev.data")
                    .with_kind(SpanKind::Consumer)
                    .start(&tracer);
                if span.is_recording() {
                    span.set_attributes([
                        KeyValue::new("handler", "bench_event"),
                        KeyValue::new("stream", "BENCH"),
                        KeyValue::new("sequence", i as i64),
                        KeyValue::new("delivery", 1),
                        KeyValue::new("messaging.system", "nats"),
                        KeyValue::new("messaging.operation.type", "process"),
                        KeyValue::new("messaging.destination.name", "bench.bev.data"),
                        KeyValue::new(
                            "messaging.message.id",
                            "0192f0c4-7a4e-7c1d-9b1e-3a3f5d7c9e11",
                        ),
                        KeyValue::new("messaging.consumer.group.name", "bench-bench_event"),
                    ]);
                }
                span.end();
            });
            let _ = provider.shutdown();
            costs.push((ratio, layered, direct));
        }
        costs
    }
}

/// The cost of one handler span in ns, through `tracing-opentelemetry`
/// and through the OpenTelemetry API, for each share of traces sampled
/// (feature `otel`; none without it).
pub(crate) fn span_costs(n: u64) -> Vec<(f64, f64, f64)> {
    #[cfg(feature = "otel")]
    return otel::span_costs(n);
    #[cfg(not(feature = "otel"))]
    {
        let _ = n;
        Vec::new()
    }
}
