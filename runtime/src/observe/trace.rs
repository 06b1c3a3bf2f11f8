//! Trace context on the wire (feature `otel`), through the propagator the
//! app installed globally (W3C trace context when none): a handler's span
//! continues the producer's trace, and a publish carries the current
//! span's context. Without the feature both are empty; `publish` then
//! copies an inbound `traceparent` forward as it is.

use async_nats::HeaderMap;

/// Makes the context in `headers` (`traceparent`, `tracestate`) the
/// parent of `span`, or with `link` a link of `span`, which then starts a
/// trace of its own. Headers without a valid one leave the span a root:
/// it starts a new trace.
#[inline]
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap, link: bool) {
    #[cfg(feature = "otel")]
    on::continue_trace(span, headers, link);
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
    use opentelemetry::Context;
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

    /// Runs `f` with the propagator the app installed
    /// (`opentelemetry::global::set_text_map_propagator`: W3C and baggage,
    /// B3, Jaeger, one of its own), or W3C trace context when it installed
    /// none (the global default propagates nothing).
    fn with_propagator<T>(mut f: impl FnMut(&dyn TextMapPropagator) -> T) -> T {
        opentelemetry::global::get_text_map_propagator(|global| {
            if global.fields().next().is_some() {
                f(global)
            } else {
                f(&TraceContextPropagator::new())
            }
        })
    }

    pub(super) fn continue_trace(span: &tracing::Span, headers: &HeaderMap, link: bool) {
        let cx: Context = with_propagator(|p| p.extract(&Reading(headers)));
        let producer = cx.span().span_context().clone();
        if !producer.is_valid() {
            return;
        }
        if link {
            // A root of its own: no parent, not even the loop's span.
            let _ = span.set_parent(Context::new());
            span.add_link(producer);
        } else {
            // Fails only for a span no OpenTelemetry layer records.
            let _ = span.set_parent(cx);
        }
    }

    pub(super) fn inject_current(headers: &mut HeaderMap) -> bool {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return false;
        }
        with_propagator(|p| p.inject_context(&cx, &mut Writing(headers)));
        true
    }
}
