//! OpenTelemetry (feature `otel`) through the propagator the app installs
//! globally: with one of its own (a single `x-trace` header, as B3's
//! single-header form is), a publish carries that header and no
//! `traceparent`, and the handler's span continues the trace read from it.
//! A binary of its own: the global propagator is the whole process's.

use std::time::Duration;

use jetwire::{App, Config, HandlerError, Headers, queue};
use jetwire_tests::{eventually, shared_server, unique_prefix};
use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use otel::span_named;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod otel;

/// `x-trace: <trace id>-<span id>`.
#[derive(Debug)]
struct OneHeader(Vec<String>);

impl TextMapPropagator for OneHeader {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            injector.set("x-trace", format!("{}-{}", sc.trace_id(), sc.span_id()));
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some((trace, span)) = extractor.get("x-trace").and_then(|v| v.split_once('-')) else {
            return cx.clone();
        };
        let (Ok(trace), Ok(span)) = (TraceId::from_hex(trace), SpanId::from_hex(span)) else {
            return cx.clone();
        };
        let sc = SpanContext::new(
            trace,
            span,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        cx.with_remote_span_context(sc)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.0)
    }
}

#[queue("queue.otprop")]
async fn ot_prop(_n: u64, headers: Headers) -> Result<(), HandlerError> {
    assert!(
        headers.get("traceparent").is_none(),
        "only the installed propagator's header"
    );
    Ok(())
}

/// Every span of this binary, recorded with the propagator of its own
/// installed first.
fn exporter() -> &'static opentelemetry_sdk::trace::InMemorySpanExporter {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        opentelemetry::global::set_text_map_propagator(OneHeader(vec!["x-trace".to_owned()]));
    });
    otel::exporter()
}

#[tokio::test]
async fn the_installed_propagator_carries_the_trace() {
    exporter();
    let prefix = unique_prefix("otprop");
    let config = Config::builder()
        .url(shared_server().url())
        .app("otprop")
        .subject_prefix(&prefix)
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["ot_prop"])
        .start()
        .await
        .expect("starts");
    let producer = tracing::info_span!("produce");
    let producer_span = producer.context().span().span_context().clone();
    running
        .publisher()
        .publish("queue.otprop", &1u64)
        .instrument(producer)
        .await
        .expect("publish");
    let handled = span_named("process queue.otprop").await;
    assert_eq!(handled.span_context.trace_id(), producer_span.trace_id());
    assert_eq!(handled.parent_span_id, producer_span.span_id());
    eventually(Duration::from_secs(10), "the ack", || async {
        (running.stats()[0].acked == 1).then_some(())
    })
    .await;
    running.shutdown().await.expect("clean shutdown");
}
