//! tower layers around handler calls (feature `tower`): the rest of a
//! handler's chain as a `tower::Service` ([`HandlerService`]), and a
//! layer over it as one more middleware.

use std::sync::Mutex;
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use crate::error::{BoxError, HandlerError};
use crate::handler::delivery::Delivery;
use crate::handler::middleware::{Middleware, Next};
use futures_util::future::BoxFuture;

/// The rest of a handler's chain, as a `tower::Service<Delivery>`: what a
/// layer given to [`App::layer`](crate::App::layer) wraps. Always ready;
/// its error is the handler's [`HandlerError`].
///
/// An error a layer makes of its own (tower's `Elapsed`, `Overloaded`) is
/// settled as a transient [`HandlerError`]; the handler's errors pass
/// through a layer with their kind.
///
/// ```
/// use jetwire::middleware::HandlerService;
/// use tower::Layer;
///
/// let limited = tower::limit::ConcurrencyLimitLayer::new(4).layer(HandlerService);
/// # drop(limited);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HandlerService;

impl Service<Delivery> for HandlerService {
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut delivery: Delivery) -> Self::Future {
        match delivery.extensions_mut().remove::<Rest>() {
            Some(Rest(next)) => next.run(delivery),
            None => Box::pin(std::future::ready(Err(HandlerError::permanent(
                "HandlerService was called with a delivery that is not on its way to a handler: call it only through App::layer",
            )))),
        }
    }
}

/// A `tower::Layer` jetwire can run around handler calls: any layer over
/// [`HandlerService`] whose service takes a [`Delivery`], answers `()`, and
/// fails with an error that converts into a boxed std error (tower's own
/// layers' errors do, and so does [`HandlerError`]). Implemented for every
/// such layer; the bound [`App::layer`](crate::App::layer) asks for.
pub trait HandlerLayer:
    Layer<
        HandlerService,
        Service: Service<Delivery, Response = (), Error: Into<BoxError>, Future: Send + 'static>
                     + Clone
                     + Send
                     + 'static,
    >
{
}

impl<L> HandlerLayer for L where
    L: Layer<
            HandlerService,
            Service: Service<
                Delivery,
                Response = (),
                Error: Into<BoxError>,
                Future: Send + 'static,
            > + Clone
                         + Send
                         + 'static,
        >
{
}

/// The rest of the chain, carried through a tower layer in the delivery's
/// extensions (a type no one else can name) to [`HandlerService`].
#[derive(Clone)]
struct Rest(Next);

/// A layer over [`HandlerService`], built once so that what it shares
/// (a concurrency limit's semaphore, a rate's budget) holds across calls:
/// each call runs a clone.
pub(crate) struct Layered<S>(Mutex<S>);

/// `layer` around [`HandlerService`], as a middleware.
pub(crate) fn layered<L: HandlerLayer>(layer: L) -> Layered<L::Service> {
    Layered(Mutex::new(layer.layer(HandlerService)))
}

impl<S> Middleware for Layered<S>
where
    S: Service<Delivery, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn call(
        &self,
        mut delivery: Delivery,
        next: Next,
    ) -> BoxFuture<'static, Result<(), HandlerError>> {
        delivery.extensions_mut().insert(Rest(next));
        let service = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            service
                .oneshot(delivery)
                .await
                .map_err(|e| HandlerError::from_boxed(e.into()))
        })
    }
}
