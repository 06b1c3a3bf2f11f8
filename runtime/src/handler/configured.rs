//! Handlers registered in code: a plain async fn, a subject known only at
//! run time, and [`HandlerOptions`]. Checked with the grammar's rules and
//! words, then made into a [`HandlerDef`] like the one an attribute makes,
//! kept for the life of the process.

use std::any::{TypeId, type_name};
use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use jetwire_grammar::{deliver, duration, name, options, subject};

use crate::error::HandlerError;
use crate::handler::context::Context;
use crate::handler::delivery::Delivery;
use crate::handler::extract::{CallFn, CallFuture, FromDelivery, Payload, StateKey};
use crate::handler::options::HandlerOptions;
use crate::handler::registry::{HandlerDef, Kind, Schemas, Settings};

/// An async fn jetwire can call with a message: the payload first (a
/// `Deserialize` type, [`Raw`](crate::Raw) or
/// [`DeadLetter`](crate::dlq::DeadLetter)), then up to eight
/// [`FromDelivery`] parameters, returning `()` or `Result<T, E>` with
/// `E: Into<HandlerError>` (`T` is `()`, or the value an `output` publishes).
/// It is implemented for every fn of those shapes; a fn of another shape
/// is a compile error where it is registered.
///
/// ```
/// use jetwire::{Context, HandlerError};
///
/// #[derive(serde::Deserialize)]
/// struct OrderCreated { order_id: u64 }
///
/// async fn on_order(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
///     tracing::info!(order = order.order_id, attempt = ctx.attempt(), "created");
///     Ok(())
/// }
///
/// let config = jetwire::Config::builder().app("billing").build().unwrap();
/// let app = jetwire::App::new(config).subscribe("orders.created", on_order);
/// # drop(app);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a jetwire handler",
    label = "not an async fn taking a payload and extractors",
    note = "a handler is an `async fn(payload, extractors..) -> Result<(), E>`: the payload is `Deserialize`, `jetwire::Raw` or `DeadLetter`, each later parameter implements `jetwire::FromDelivery` (`Context`, `State<T>`, `Extension<T>`, `Headers`), and `E: Into<HandlerError>`"
)]
pub trait Handler<Args>: Send + Sync + 'static {
    /// What the registration checks: payload, requirements, `Ok` type.
    #[doc(hidden)]
    fn shape() -> Shape;

    /// One call on `delivery`; the `Ok` value goes to `output`, if given.
    #[doc(hidden)]
    fn call(&'static self, delivery: Delivery, output: Option<&'static str>) -> CallFuture;
}

/// A handler fn's types, as registration checks them.
#[doc(hidden)]
pub struct Shape {
    payload: &'static str,
    content_type: Option<&'static str>,
    dead_letters: bool,
    requires: Vec<fn() -> Option<StateKey>>,
    /// The `Ok` type, unless it is `()`.
    ok: Option<&'static str>,
}

/// What a handler returns: `()` or `Result<T, E>`.
#[doc(hidden)]
pub trait Returned: Send + 'static {
    /// The `Ok` type, unless it is `()`.
    fn ok_type() -> Option<&'static str>;
    /// The call's error, or the `Ok` value as JSON when it is published.
    fn finish(self, publish: bool) -> Result<Option<serde_json::Value>, HandlerError>;
}

impl Returned for () {
    fn ok_type() -> Option<&'static str> {
        None
    }
    fn finish(self, _publish: bool) -> Result<Option<serde_json::Value>, HandlerError> {
        Ok(None)
    }
}

impl<T, E> Returned for Result<T, E>
where
    T: serde::Serialize + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
{
    fn ok_type() -> Option<&'static str> {
        (TypeId::of::<T>() != TypeId::of::<()>()).then(type_name::<T>)
    }
    fn finish(self, publish: bool) -> Result<Option<serde_json::Value>, HandlerError> {
        let value = self.map_err(Into::into)?;
        if !publish {
            return Ok(None);
        }
        encode_output(&value).map(Some).map_err(|e| {
            HandlerError::transient(format!("the output does not encode as JSON: {e}"))
        })
    }
}

/// Publishes a handler's `Ok` value to `subject` (as `ctx.publish` would,
/// so a retried handler's output is stored once); a publish that fails is
/// a transient error.
pub(crate) async fn publish_output(
    ctx: &Context,
    subject: &str,
    value: serde_json::Value,
) -> Result<(), HandlerError> {
    ctx.publish(subject, &value)
        .await
        .map_err(HandlerError::from)
}

/// A handler's `Ok` value as JSON; `T: Serialize` is checked here.
#[doc(hidden)]
pub fn encode_output<T: serde::Serialize>(
    value: &T,
) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(value)
}

macro_rules! handler_fn {
    ($($arg:ident),*) => {
        impl<F, Fut, P, R, $($arg,)*> Handler<(P, $($arg,)*)> for F
        where
            F: Fn(P, $($arg,)*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            P: Payload,
            R: Returned,
            $($arg: FromDelivery + 'static,)*
        {
            fn shape() -> Shape {
                Shape {
                    payload: type_name::<P>(),
                    content_type: P::CONTENT_TYPE_READ,
                    dead_letters: P::DEAD_LETTERS,
                    requires: vec![$(<$arg as FromDelivery>::requirement,)*],
                    ok: R::ok_type(),
                }
            }

            #[allow(non_snake_case)]
            fn call(&'static self, delivery: Delivery, output: Option<&'static str>) -> CallFuture {
                Box::pin(async move {
                    let payload = P::decode(delivery.payload().clone(), &delivery)?;
                    $(let $arg = <$arg as FromDelivery>::from_delivery(&delivery).await?;)*
                    let returned = self(payload, $($arg,)*).await;
                    match (returned.finish(output.is_some())?, output) {
                        (Some(value), Some(subject)) => {
                            publish_output(delivery.context(), subject, value).await
                        }
                        _ => Ok(()),
                    }
                })
            }
        }
    };
}

handler_fn!();
handler_fn!(A1);
handler_fn!(A1, A2);
handler_fn!(A1, A2, A3);
handler_fn!(A1, A2, A3, A4);
handler_fn!(A1, A2, A3, A4, A5);
handler_fn!(A1, A2, A3, A4, A5, A6);
handler_fn!(A1, A2, A3, A4, A5, A6, A7);
handler_fn!(A1, A2, A3, A4, A5, A6, A7, A8);

/// A handler given in code, checked and made into a definition that lives
/// as long as the process (as an attribute's does): a mistake names the handler, where it was registered, and the
/// rule, in the words the attributes' errors use.
pub(crate) fn register<H: Handler<A>, A>(
    kind: Kind,
    subject: &str,
    handler: H,
    options: HandlerOptions,
    at: &'static Location<'static>,
) -> Result<&'static HandlerDef, String> {
    let (module, fn_name) = names_of::<H>();
    let name = match (&options.name, fn_name) {
        (Some(given), _) => given.clone(),
        (None, Some(own)) => own.to_owned(),
        (None, None) => {
            return Err(format!(
                "a closure registered at {at} has no name: give it one with `HandlerOptions::new().name(\"..\")`, or register a named fn"
            ));
        }
    };
    let shape = H::shape();
    let wrong = |rule: String| {
        format!(
            "handler `{module}::{name}` ({}:{}) on \"{subject}\": {rule}",
            at.file(),
            at.line()
        )
    };
    name::check(&name, name::Kind::Durable)
        .map_err(|e| wrong(format!("its name `{name}`: {e}")))?;
    let settings = settings(kind, &options).map_err(wrong)?;
    check_subject(kind, subject, &shape, &settings).map_err(wrong)?;
    match (settings.output, shape.ok) {
        (Some(_), None) => {
            return Err(wrong(
                "`output` publishes the `Ok` value: return `Result<T, E>` with the value to publish".to_owned(),
            ));
        }
        (None, Some(ok)) => {
            return Err(wrong(format!(
                "it returns `{ok}` on `Ok` but has no `output`: set `HandlerOptions::output(subject)` to publish it, or return `Result<(), E>`"
            )));
        }
        _ => {}
    }
    let handler: &'static H = Box::leak(Box::new(handler));
    let output = settings.output;
    let call: CallFn = Box::leak(Box::new(move |d| handler.call(d, output)));
    Ok(Box::leak(Box::new(HandlerDef {
        name: leak(name),
        module: leak(module),
        file: at.file(),
        line: at.line(),
        kind,
        subject: leak(subject.to_owned()),
        payload: leak(crate::text::short_type_name(shape.payload)),
        content_type: shape.content_type,
        options: settings,
        requires: Box::leak(shape.requires.into_boxed_slice()),
        call,
        schema: options.schema.unwrap_or(no_schema),
    })))
}

fn no_schema(_: &mut Schemas) -> Option<serde_json::Value> {
    None
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A fn item's module and name, from its type's name; a closure has no
/// name (its module is the fn it is written in).
fn names_of<H>() -> (String, Option<&'static str>) {
    let path = type_name::<H>();
    if let Some(at) = path.find("::{{closure}}") {
        return (path[..at].to_owned(), None);
    }
    match path.rsplit_once("::") {
        Some((module, name)) => (module.to_owned(), Some(name)),
        None => (String::new(), Some(path)),
    }
}

/// The subject under the rules the attribute's would follow.
fn check_subject(kind: Kind, value: &str, shape: &Shape, s: &Settings) -> Result<(), String> {
    let usage = match (kind, shape.dead_letters, s.stream.is_some()) {
        (Kind::Subscribe, true, _) => subject::Usage::DeadLetters,
        (Kind::Subscribe, false, _) => subject::Usage::Subscribe,
        (Kind::Queue, true, _) => {
            return Err("dead letters are read with `subscribe(\"dlq.>\", ..)`, not `queue`: every letter stays in the dead-letter stream for operators, and a dead-letter handler only watches it".to_owned());
        }
        (Kind::Queue, false, false) => subject::Usage::Queue,
        (Kind::Queue, false, true) => subject::Usage::QueueOnStream,
    };
    options::handler_subject(value, usage).map_err(|m| m.message)?;
    if s.partitions.is_some() {
        options::partitioned_subject(value).map_err(|m| m.message)?;
    }
    Ok(())
}

/// The options as the attribute's expansion would give them.
fn settings(kind: Kind, o: &HandlerOptions) -> Result<Settings, String> {
    if kind == Kind::Queue {
        for (key, given) in [
            ("deliver", o.deliver.is_some()),
            ("durable", o.durable.is_some()),
        ] {
            if given {
                return Err(options::not_for_queue(key));
            }
        }
    }
    let number = |key, n: Option<u32>, max, example| {
        n.map(|n| options::in_range(key, n.into(), max, example))
            .transpose()
    };
    let positive = |key: &str, d: &Option<String>, example: &str| {
        d.as_deref()
            .map(|text| match duration::parse(text) {
                Ok(d) if d.is_zero() => Err(options::zero_duration(key, example)),
                Ok(d) => Ok(d),
                Err(e) => Err(format!("`{key}`: {e}")),
            })
            .transpose()
    };
    let max_deliver = number("max_deliver", o.max_deliver, options::MAX_MAX_DELIVER, "5")?;
    let backoff = o
        .backoff
        .as_ref()
        .map(|list| backoff(list, max_deliver))
        .transpose()?;
    let name = |key: &str, value: &Option<String>, kind| {
        value
            .as_deref()
            .map(|v| {
                name::check(v, kind)
                    .map(|()| leak(v.to_owned()))
                    .map_err(|e| format!("`{key}`: {e}"))
            })
            .transpose()
    };
    let output = o
        .output
        .as_deref()
        .map(|v| {
            options::output_subject(v)
                .map(|()| leak(v.to_owned()))
                .map_err(|m| format!("`output`: {}", m.message))
        })
        .transpose()?;
    if o.partitions.is_some() && o.singleton == Some(true) {
        return Err(options::PARTITIONS_AND_SINGLETON.to_owned());
    }
    if o.partitions.is_some() && o.bind == Some(true) {
        return Err(options::BIND_AND_PARTITIONS.to_owned());
    }
    let ack = o.ack.as_deref().map(options::ack).transpose()?;
    if ack == Some(options::Ack::First) {
        let given = [
            ("max_deliver", o.max_deliver.is_some()),
            ("backoff", o.backoff.is_some()),
            ("output", o.output.is_some()),
        ];
        if let Some((key, _)) = given.into_iter().find(|(_, given)| *given) {
            return Err(options::with_ack_first(key));
        }
    }
    Ok(Settings {
        max_deliver,
        backoff,
        ack_wait: positive("ack_wait", &o.ack_wait, "30s")?,
        concurrency: number("concurrency", o.concurrency, options::MAX_CONCURRENCY, "8")?,
        timeout: positive("timeout", &o.timeout, "10s")?,
        deliver: o
            .deliver
            .as_deref()
            .map(deliver::parse)
            .transpose()
            .map_err(|e| format!("`deliver`: {e}"))?,
        durable: name("durable", &o.durable, name::Kind::Durable)?,
        stream: name("stream", &o.stream, name::Kind::Stream)?,
        output,
        singleton: o.singleton,
        partitions: number("partitions", o.partitions, options::MAX_PARTITIONS, "8")?,
        ack,
        bind: o.bind,
    })
}

fn backoff(list: &[String], max_deliver: Option<u32>) -> Result<&'static [Duration], String> {
    if list.is_empty() {
        return Err(options::EMPTY_BACKOFF.to_owned());
    }
    let delays = list
        .iter()
        .map(|d| duration::parse(d).map_err(|e| format!("`backoff`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    options::backoff_fits(delays.len(), max_deliver)?;
    Ok(Box::leak(delays.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn named(_: crate::handler::extract::Raw) {}

    #[test]
    fn a_fn_is_named_by_its_path_and_a_closure_not_at_all() {
        fn of<H>(_: &H) -> (String, Option<&'static str>) {
            names_of::<H>()
        }
        let (module, name) = of(&named);
        assert_eq!(name, Some("named"));
        assert!(module.ends_with("handler::configured::tests"), "{module}");
        let closure = |_: crate::handler::extract::Raw| async {};
        assert_eq!(of(&closure).1, None);
    }

    #[test]
    fn options_are_checked_with_the_attributes_words() {
        let err = settings(Kind::Queue, &HandlerOptions::new().deliver("all"))
            .expect_err("deliver on a queue");
        assert!(
            err.starts_with("`deliver` applies only to #[subscribe]"),
            "{err}"
        );
        let err = settings(
            Kind::Queue,
            &HandlerOptions::new().max_deliver(2).backoff(["1s", "2s"]),
        )
        .expect_err("too many delays");
        assert!(err.contains("allows at most 1"), "{err}");
        let err = settings(Kind::Queue, &HandlerOptions::new().concurrency(0))
            .expect_err("zero concurrency");
        assert!(err.contains("from 1 to 10000"), "{err}");
        let err =
            settings(Kind::Queue, &HandlerOptions::new().timeout("0s")).expect_err("zero timeout");
        assert!(err.contains("longer than zero"), "{err}");
        let err = settings(Kind::Subscribe, &HandlerOptions::new().deliver("yesterday"))
            .expect_err("bad deliver");
        assert!(err.starts_with("`deliver`"), "{err}");
        let ok = settings(
            Kind::Subscribe,
            &HandlerOptions::new()
                .max_deliver(3)
                .backoff(["1s", "5s"])
                .deliver("all"),
        )
        .expect("valid options");
        assert_eq!(ok.backoff.map(<[_]>::len), Some(2));
        let err = settings(
            Kind::Queue,
            &HandlerOptions::new().ack("first").max_deliver(3),
        )
        .expect_err("at most once, redelivered");
        assert!(
            err.starts_with("`max_deliver` cannot go with `ack = \"first\"`"),
            "{err}"
        );
        let err =
            settings(Kind::Queue, &HandlerOptions::new().ack("last")).expect_err("an unknown ack");
        assert!(err.contains("the one value is \"first\""), "{err}");
    }
}
