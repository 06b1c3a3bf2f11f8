//! What the OpenTelemetry test binaries share: every span of the binary
//! recorded in memory, and waiting for one by name. Each binary has its
//! own (the subscriber and the propagator are the whole process's).

use std::sync::OnceLock;
use std::time::Duration;

use jetwire_tests::eventually;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

/// Every span of this test binary, exported as it ends.
pub(crate) fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only subscriber");
        exporter
    })
}

/// The first finished span named `name`, waited for.
pub(crate) async fn span_named(name: &str) -> SpanData {
    eventually(Duration::from_secs(20), name, || async {
        exporter()
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .find(|s| s.name == name)
    })
    .await
}
