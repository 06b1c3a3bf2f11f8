//! [`HandlerOptions`]: the attributes' option keys as builder methods,
//! for handlers registered in code; checked by `configured`.

use crate::handler::registry::Schemas;

/// The options of a handler registered in code (`App::subscribe_with`,
/// `App::queue_with`): the attributes' keys, as methods. Durations are
/// written as in the attributes (`"500ms"`, `"30s"`); everything is
/// checked when the handler is registered, and a mistake fails
/// `App::start` naming the handler.
///
/// ```
/// use jetwire::HandlerOptions;
///
/// let options = HandlerOptions::new()
///     .name("send_email")
///     .max_deliver(5)
///     .backoff(["1s", "30s"])
///     .concurrency(8);
/// # drop(options);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HandlerOptions {
    pub(crate) name: Option<String>,
    pub(crate) max_deliver: Option<u32>,
    pub(crate) backoff: Option<Vec<String>>,
    pub(crate) ack_wait: Option<String>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) timeout: Option<String>,
    pub(crate) deliver: Option<String>,
    pub(crate) durable: Option<String>,
    pub(crate) stream: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) singleton: Option<bool>,
    pub(crate) partitions: Option<u32>,
    pub(crate) ack: Option<String>,
    pub(crate) bind: Option<bool>,
    pub(crate) schema: Option<fn(&mut Schemas) -> Option<serde_json::Value>>,
}

impl HandlerOptions {
    /// The defaults, as an attribute without options.
    pub fn new() -> HandlerOptions {
        HandlerOptions::default()
    }

    /// The handler's name, in logs, metrics, `App::only` and durables; a
    /// fn's own name unless given. A closure must be given one.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Deliveries before dead-lettering (`max_deliver`).
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = Some(n);
        self
    }

    /// The delay before each redelivery; the last repeats (`backoff`).
    pub fn backoff<I, S>(mut self, delays: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.backoff = Some(delays.into_iter().map(Into::into).collect());
        self
    }

    /// How long the server waits for an ack or progress (`ack_wait`).
    pub fn ack_wait(mut self, d: impl Into<String>) -> Self {
        self.ack_wait = Some(d.into());
        self
    }

    /// Calls in flight per process (`concurrency`).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// A call running longer fails as transient (`timeout`).
    pub fn timeout(mut self, d: impl Into<String>) -> Self {
        self.timeout = Some(d.into());
        self
    }

    /// Where a new event durable starts (`deliver`; events only).
    pub fn deliver(mut self, start: impl Into<String>) -> Self {
        self.deliver = Some(start.into());
        self
    }

    /// The event durable's name (`durable`; events only).
    pub fn durable(mut self, name: impl Into<String>) -> Self {
        self.durable = Some(name.into());
        self
    }

    /// Bind to this stream instead of the default (`stream`).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// Publish the `Ok` value here before the ack (`output`).
    pub fn output(mut self, subject: impl Into<String>) -> Self {
        self.output = Some(subject.into());
        self
    }

    /// One replica consumes at a time (`singleton`).
    pub fn singleton(mut self, on: bool) -> Self {
        self.singleton = Some(on);
        self
    }

    /// Messages with one key in order, spread over replicas (`partitions`).
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }

    /// `"first"`: acknowledged before the call, so run at most once
    /// (`ack`); it cannot go with `max_deliver`, `backoff` or `output`.
    pub fn ack(mut self, when: impl Into<String>) -> Self {
        self.ack = Some(when.into());
        self
    }

    /// Adopt the durable as the server has it, never creating or
    /// updating it (`bind`); not with `partitions`.
    pub fn bind(mut self, on: bool) -> Self {
        self.bind = Some(on);
        self
    }

    /// The payload's JSON Schema for the AsyncAPI document: a fn given in
    /// code has no attribute to find it, so it is named here.
    #[cfg(feature = "asyncapi")]
    pub fn schema<T: schemars::JsonSchema>(mut self) -> Self {
        fn described<T: schemars::JsonSchema>(s: &mut Schemas) -> Option<serde_json::Value> {
            Some(s.generator.subschema_for::<T>().to_value())
        }
        self.schema = Some(described::<T>);
        self
    }
}
