//! How a handler's span relates to the producer's trace
//! (`JETWIRE_TRACE_CONTEXT`, feature `otel`).

use crate::error::Error;

/// How a handler's span takes the trace context a message came with
/// (`JETWIRE_TRACE_CONTEXT`; read with feature `otel`).
///
/// ```
/// use jetwire::{Config, TraceContext};
///
/// let config = Config::builder().trace_context(TraceContext::Link).build().unwrap();
/// assert_eq!(config.trace_context, TraceContext::Link);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceContext {
    /// `continue`: the span is a child of the producer's span, in its
    /// trace. The default.
    #[default]
    Continue,
    /// `link`: the span starts a trace of its own, linked to the
    /// producer's span: work that runs long after the publish (a queue's
    /// backlog, a retry an hour later) does not stretch the producer's
    /// trace.
    Link,
}

impl TraceContext {
    pub(crate) fn parse(value: &str) -> Result<TraceContext, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "continue" => Ok(TraceContext::Continue),
            "link" => Ok(TraceContext::Link),
            _ => Err(Error::Config(format!(
                "JETWIRE_TRACE_CONTEXT={value:?}: write `continue` (a child of the producer's span) or `link` (a trace of its own, linked to it)"
            ))),
        }
    }
}
