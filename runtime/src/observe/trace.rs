//! W3C trace context on the wire (feature `otel`): a handler's span
//! continues the producer's trace, and a publish carries the current
//! span's context. Without the feature both are empty; `publish` then
//! copies an inbound `traceparent` forward as it is.

use async_nats::HeaderMap;

/// Makes the context in `headers` (`traceparent`, `tracestate`) the
/// parent of `span`. Headers without a valid one leave the span a root:
/// it starts a new trace.
#[inline]
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    #[cfg(feature = "otel")]
    on::continue_trace(span, headers);
}

/// Writes the current span's context into `headers`; whether there was
/// one to write (a span recorded by an OpenTelemetry layer).
#[inline]
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn inject_current(headers: &mut HeaderMap) -> bool {
    #[cfg(feature = "otel")]
    return on::inject_current(headers);
    #[cfg(not(feature = "otel"))]
    false
}

#[cfg(feature = "otel")]
mod on {
    use async_nats::HeaderMap;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Reading<'a>(&'a HeaderMap);

    impl Extractor for Reading<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).map(|v| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_ref()).collect()
        }
    }

    struct Writing<'a>(&'a mut HeaderMap);

    impl Injector for Writing<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key, value);
        }
    }

    pub(super) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
        let cx = TraceContextPropagator::new().extract(&Reading(headers));
        if cx.span().span_context().is_valid() {
            // Fails only for a span no OpenTelemetry layer records.
            let _ = span.set_parent(cx);
        }
    }

    pub(super) fn inject_current(headers: &mut HeaderMap) -> bool {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return false;
        }
        TraceContextPropagator::new().inject_context(&cx, &mut Writing(headers));
        true
    }
}
