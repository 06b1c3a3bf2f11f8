//! What the macros' expansion reaches for. Not public API: no stability
//! promise, and nothing here is for hand-written code.

pub use inventory;

pub use crate::handler::extract::{CallFn, CallFuture, IntoOutcome, Payload, StateKey};
pub use crate::handler::registry::{Ack, Deliver, HandlerDef, Kind, Settings};

/// Settles a handler with `output`: its `Ok` value is published to `subject`
/// (as `ctx.publish` would, so a retried handler's output is stored once)
/// before the ack; a publish that fails is a transient error.
pub async fn publish_output<E: Into<crate::error::HandlerError>>(
    ctx: &crate::handler::context::Context,
    subject: &'static str,
    returned: Result<Result<serde_json::Value, serde_json::Error>, E>,
) -> Result<(), crate::error::HandlerError> {
    let value = returned.map_err(Into::into)?.map_err(|e| {
        crate::error::HandlerError::transient(format!(
            "the output for `{subject}` does not encode as JSON: {e}"
        ))
    })?;
    crate::handler::configured::publish_output(ctx, subject, value).await
}

/// A handler's `Ok` value as JSON, for [`publish_output`]; `T: Serialize`
/// is checked here, at the `T` the handler returns.
pub use crate::handler::configured::encode_output;

/// Checks, at the handler's name, that its future can move between threads.
pub fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

pub use serde_json;

/// A handler's payload schema for the AsyncAPI document, where its type
/// implements `schemars::JsonSchema` (feature `asyncapi`); `None` else.
///
/// The expansion calls `(&Probe::<T>::new()).schema(..)` with both traits
/// in scope: method lookup takes `Described` when `T` has a schema, and
/// falls back to `Undescribed` (one reference further) when it has not.
pub mod schema {
    use std::marker::PhantomData;

    pub use crate::handler::registry::Schemas;

    /// Names a payload type without a value of it.
    pub struct Probe<T>(PhantomData<fn() -> T>);

    impl<T> Probe<T> {
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Probe(PhantomData)
        }
    }

    /// A payload type with a JSON Schema.
    pub trait Described {
        fn schema(&self, schemas: &mut Schemas) -> Option<serde_json::Value>;
    }

    #[cfg(feature = "asyncapi")]
    impl<T: schemars::JsonSchema> Described for Probe<T> {
        fn schema(&self, schemas: &mut Schemas) -> Option<serde_json::Value> {
            Some(schemas.generator.subschema_for::<T>().to_value())
        }
    }

    /// A payload type without one.
    pub trait Undescribed {
        fn schema(&self, _schemas: &mut Schemas) -> Option<serde_json::Value> {
            None
        }
    }

    impl<T> Undescribed for &Probe<T> {}
}

/// A handler's parameters after the payload, taken from the delivery.
///
/// Whether a parameter's type implements `FromDelivery` is checked once,
/// at the type, where the expansion names its requirement; taking it goes
/// through `(&Probe::<T>::new()).extract(..)` with both traits in scope,
/// which finds `Extract` for an extractor and falls back to `Unextractable`
/// (never run: the check failed the build) for anything else, so one
/// mistake is one error.
pub mod extract {
    use std::future::Future;
    use std::marker::PhantomData;

    use crate::error::HandlerError;
    use crate::handler::delivery::Delivery;
    use crate::handler::extract::FromDelivery;

    /// Names a parameter type without a value of it.
    pub struct Probe<T>(PhantomData<fn() -> T>);

    impl<T> Probe<T> {
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Probe(PhantomData)
        }
    }

    /// An extractor's type.
    pub trait Extract<T> {
        fn extract(
            &self,
            delivery: &Delivery,
        ) -> impl Future<Output = Result<T, HandlerError>> + Send;
    }

    impl<T: FromDelivery> Extract<T> for Probe<T> {
        fn extract(
            &self,
            delivery: &Delivery,
        ) -> impl Future<Output = Result<T, HandlerError>> + Send {
            T::from_delivery(delivery)
        }
    }

    /// Any other type.
    pub trait Unextractable<T> {
        fn extract(&self, _delivery: &Delivery) -> std::future::Ready<Result<T, HandlerError>> {
            std::future::ready(Err(HandlerError::permanent(
                "not an extractor: the build reported it",
            )))
        }
    }

    impl<T> Unextractable<T> for &Probe<T> {}
}
