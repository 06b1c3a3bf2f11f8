//! OpenTelemetry (feature `otel`), recorded in memory: a handler's span
//! continues the producer's trace, a handler's publish carries its span to
//! the next handler, dead letters carry it too, a message without trace
//! headers starts a new trace, the spans follow the messaging
//! conventions, and `TraceContext::Link` links instead of continuing.

use std::time::Duration;

use jetwire::{App, Config, Context, HandlerError, TraceContext, queue};
use jetwire_tests::{
    dlq_stream, eventually, header, shared_server, stream_messages, unique_prefix,
};
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt};
use opentelemetry_sdk::trace::SpanData;
use otel::{exporter, span_named};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod otel;

#[queue("queue.otfirst")]
async fn ot_first(n: u64, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish("queue.otsecond", &n).await?;
    Ok(())
}

#[queue("queue.otsecond")]
async fn ot_second(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.otlinked")]
async fn ot_linked(_n: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.otfail", max_deliver = 1)]
async fn ot_fail(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused"))
}

fn config(prefix: &str) -> Config {
    Config::builder()
        .url(shared_server().url())
        .app("otel")
        .subject_prefix(prefix)
        .build()
        .expect("valid")
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn handler_spans_continue_the_producers_trace() {
    exporter();
    let prefix = unique_prefix("otel");
    let running = App::new(config(&prefix))
        .only(&["ot_first", "ot_second", "ot_fail"])
        .start()
        .await
        .expect("starts");
    let publisher = running.publisher();

    let producer = tracing::info_span!("produce");
    let producer_cx = producer.context();
    let producer_span = producer_cx.span().span_context().clone();
    assert!(producer_span.is_valid());
    publisher
        .publish("queue.otfirst", &1u64)
        .instrument(producer)
        .await
        .expect("publish");

    let first = span_named("process queue.otfirst").await;
    assert_eq!(first.span_context.trace_id(), producer_span.trace_id());
    assert_eq!(first.parent_span_id, producer_span.span_id());
    assert!(first.parent_span_is_remote);
    assert_eq!(first.span_kind, SpanKind::Consumer);
    let second = span_named("process queue.otsecond").await;
    assert_eq!(second.span_context.trace_id(), producer_span.trace_id());
    assert_eq!(second.parent_span_id, first.span_context.span_id());

    assert_eq!(
        attribute(&first, "messaging.system").as_deref(),
        Some("nats")
    );
    assert_eq!(
        attribute(&first, "messaging.destination.name").as_deref(),
        Some("queue.otfirst")
    );
    assert_eq!(
        attribute(&first, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert!(attribute(&first, "messaging.message.id").is_some());
    // Recorded once the span is known to be taken, with their own types.
    assert_eq!(attribute(&first, "delivery").as_deref(), Some("1"));
    assert!(attribute(&first, "sequence").is_some_and(|s| s.parse::<u64>().is_ok()));
    assert!(
        attribute(&first, "messaging.consumer.group.name").is_some_and(|d| d.contains("otel")),
        "the durable"
    );

    // No trace headers: a new trace, with no parent.
    publisher
        .publish("queue.otfail", &2u64)
        .await
        .expect("publish");
    let failed = span_named("process queue.otfail").await;
    assert_ne!(failed.span_context.trace_id(), producer_span.trace_id());
    assert_eq!(failed.parent_span_id, SpanId::INVALID);
    // Its dead letter carries the failed call's span.
    let client = async_nats::connect(shared_server().url())
        .await
        .expect("connects");
    let letters = eventually(Duration::from_secs(20), "the letter", || async {
        let l = stream_messages(&client, &dlq_stream(&prefix)).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    let traceparent = header(&letters[0], "traceparent").expect("the letter has a traceparent");
    assert!(
        traceparent.contains(&failed.span_context.span_id().to_string()),
        "{traceparent} names the failed call's span"
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn with_trace_context_link_a_handler_span_starts_its_own_trace_linked_to_the_producer() {
    exporter();
    let prefix = unique_prefix("otlink");
    let config = Config::builder()
        .url(shared_server().url())
        .app("otel")
        .subject_prefix(&prefix)
        .trace_context(TraceContext::Link)
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["ot_linked"])
        .start()
        .await
        .expect("starts");
    let producer = tracing::info_span!("produce-linked");
    let producer_span = producer.context().span().span_context().clone();
    running
        .publisher()
        .publish("queue.otlinked", &1u64)
        .instrument(producer)
        .await
        .expect("publish");
    let linked = span_named("process queue.otlinked").await;
    assert_ne!(linked.span_context.trace_id(), producer_span.trace_id());
    assert_eq!(linked.parent_span_id, SpanId::INVALID, "a root");
    let links: Vec<_> = linked
        .links
        .iter()
        .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
        .collect();
    assert_eq!(
        links,
        [(producer_span.trace_id(), producer_span.span_id())],
        "one link, to the producer's span"
    );
    running.shutdown().await.expect("clean shutdown");
}
