//! Traces to an OTLP endpoint, only when one is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. `http://127.0.0.1:4318`); without
//! it, nothing is set up and nothing is sent.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The endpoint's variable, as every OpenTelemetry SDK reads it.
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// A layer sending every span to the configured endpoint (OTLP over HTTP,
/// protobuf), and its provider, to flush at exit; `None` when no endpoint
/// is configured.
pub(crate) fn layer<S>()
-> Result<Option<(impl Layer<S>, SdkTracerProvider)>, Box<dyn std::error::Error>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(endpoint) = std::env::var(ENDPOINT).ok().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("orders").build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("orders"));
    Ok(Some((layer, provider)))
}
