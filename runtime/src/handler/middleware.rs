//! Code around a handler: [`Middleware`], [`from_fn`], [`Next`], and the
//! chain each handler's calls go through, outermost first.
//!
//! A middleware gets the [`Delivery`] and either passes it on with
//! [`Next::run`] or returns without calling the handler. What it returns
//! is settled exactly as a handler's result is (ack, retry, dead letter,
//! discard; a panic is `panic`), inside the call's `timeout`, panic
//! recovery and automatic progress. `TestApp` runs the same chain.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, HandlerError};
use crate::handler::delivery::Delivery;
use crate::handler::extract::{CallFn, CallFuture};
use crate::handler::registry::HandlerDef;
use futures_util::future::BoxFuture;

/// Code that runs around a handler's calls. Write one with [`from_fn`];
/// implement the trait for a middleware with its own state.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use jetwire::middleware::{Middleware, Next};
/// use jetwire::{BoxFuture, Delivery, HandlerError};
///
/// /// Counts the calls that failed.
/// struct Failures(Arc<AtomicU64>);
///
/// impl Middleware for Failures {
///     fn call(&self, delivery: Delivery, next: Next) -> BoxFuture<'static, Result<(), HandlerError>> {
///         let failures = self.0.clone();
///         Box::pin(async move {
///             let result = next.run(delivery).await;
///             if result.is_err() {
///                 failures.fetch_add(1, Ordering::Relaxed);
///             }
///             result
///         })
///     }
/// }
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Handles one delivery: passes it on with `next.run(delivery)`, or
    /// settles it here by returning without.
    fn call(&self, delivery: Delivery, next: Next) -> BoxFuture<'static, Result<(), HandlerError>>;
}

/// A middleware from an async fn of a [`Delivery`] and a [`Next`].
///
/// ```
/// use std::time::Duration;
/// use jetwire::middleware::{from_fn, Next};
/// use jetwire::{Delivery, HandlerError};
///
/// /// Holds back messages of a paused tenant for a minute, without a run.
/// async fn paused(delivery: Delivery, next: Next) -> Result<(), HandlerError> {
///     if delivery.headers().get("tenant").is_some_and(|t| t.as_str() == "paused") {
///         return Err(HandlerError::retry_after("tenant paused", Duration::from_secs(60)));
///     }
///     next.run(delivery).await
/// }
/// let _middleware = from_fn(paused);
/// ```
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(Delivery, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    FromFn(f)
}

/// The middleware [`from_fn`] makes.
#[derive(Clone, Copy)]
pub struct FromFn<F>(F);

impl<F, Fut> Middleware for FromFn<F>
where
    F: Fn(Delivery, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn call(&self, delivery: Delivery, next: Next) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin((self.0)(delivery, next))
    }
}

impl<F> std::fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromFn")
    }
}

/// The rest of a handler's chain: the middleware after this one, then
/// the handler. Run it at most once.
#[derive(Clone)]
pub struct Next {
    chain: Arc<Chain>,
    at: usize,
}

impl Next {
    /// Runs the rest of the chain on `delivery`: what the handler (or a
    /// middleware after this one) returned.
    pub fn run(self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandlerError>> {
        match self.chain.layers.get(self.at) {
            Some(layer) => {
                let next = Next {
                    chain: self.chain.clone(),
                    at: self.at + 1,
                };
                layer.call(delivery, next)
            }
            None => (self.chain.handler)(delivery),
        }
    }
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("middleware_left", &(self.chain.layers.len() - self.at))
            .finish()
    }
}

/// One handler's middleware, outermost first, then the handler.
pub(crate) struct Chain {
    layers: Vec<Arc<dyn Middleware>>,
    handler: CallFn,
}

/// The middleware an app was given, each for every handler or for the
/// handlers answering to one name, in the order added; and, once
/// [`Middlewares::resolve`]d, each handler's chain.
#[derive(Clone, Default)]
pub(crate) struct Middlewares {
    added: Vec<(Option<String>, Arc<dyn Middleware>)>,
    /// By handler, for those with any middleware.
    chains: HashMap<usize, Arc<Chain>>,
}

fn key(def: &HandlerDef) -> usize {
    std::ptr::from_ref(def) as usize
}

impl Middlewares {
    /// Adds a middleware for every handler (`None`) or those answering to
    /// `handler`, inside those added before.
    pub(crate) fn add(&mut self, handler: Option<String>, middleware: Arc<dyn Middleware>) {
        self.added.push((handler, middleware));
    }

    /// Builds each of `defs`' chains. A middleware for a name no handler
    /// answers to is a mistake: it names the handlers there are.
    pub(crate) fn resolve(&mut self, defs: &[&'static HandlerDef]) -> Result<(), Error> {
        for name in self.added.iter().filter_map(|(name, _)| name.as_deref()) {
            if !defs.iter().any(|d| d.answers_to(name)) {
                let mut known: Vec<String> = defs.iter().map(|d| d.path()).collect();
                known.sort();
                return Err(Error::Config(format!(
                    "middleware_for(\"{name}\"): no handler of this app answers to that name; write a handler's fn name or module path, one of: {}",
                    known.join(", ")
                )));
            }
        }
        self.chains = defs
            .iter()
            .filter_map(|def| {
                let layers: Vec<_> = self
                    .added
                    .iter()
                    .filter(|(name, _)| name.as_deref().is_none_or(|n| def.answers_to(n)))
                    .map(|(_, m)| m.clone())
                    .collect();
                let chain = Chain {
                    layers,
                    handler: def.call,
                };
                (!chain.layers.is_empty()).then(|| (key(def), Arc::new(chain)))
            })
            .collect();
        Ok(())
    }

    /// Starts `def`'s call on `delivery`: through its chain, or straight
    /// to the handler when it has none.
    pub(crate) fn call(&self, def: &HandlerDef, delivery: Delivery) -> CallFuture {
        if self.chains.is_empty() {
            return (def.call)(delivery);
        }
        match self.chains.get(&key(def)) {
            Some(chain) => Next {
                chain: chain.clone(),
                at: 0,
            }
            .run(delivery),
            None => (def.call)(delivery),
        }
    }
}
