//! The attributes of [jetwire](https://docs.rs/jetwire): `#[subscribe]` and
//! `#[queue]`. Use them through the `jetwire` crate, which re-exports them;
//! the expansion refers to `::jetwire`.
//!
//! Each attribute checks the subject, the options and the fn's signature at
//! compile time, reports every mistake at once on the token it is about,
//! leaves the fn as written (so it can be called directly, e.g. in tests),
//! and registers the handler for `jetwire::run` and `jetwire::testing::TestApp`.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod keys;
mod output;
mod partitions;
mod spans;
mod valid;

use proc_macro::TokenStream;

/// Declares an event handler: every app with a handler on the subject gets
/// its own copy of each message; the replicas of one app share the work.
///
/// ```ignore
/// #[jetwire::subscribe("orders.created", deliver = "all", concurrency = 4)]
/// async fn on_order(order: OrderCreated, ctx: jetwire::Context) -> Result<(), jetwire::HandlerError> {
///     Ok(())
/// }
/// ```
///
/// Options: `max_deliver`, `backoff`, `ack_wait`, `concurrency`, `timeout`,
/// `deliver` (`"new"` or `"all"`), `durable`, `stream`, `output`, `singleton`,
/// `partitions`. See the `jetwire`
/// crate docs for their meaning and defaults.
#[proc_macro_attribute]
pub fn subscribe(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::handler(attr::Kind::Subscribe, args.into(), item.into()).into()
}

/// Declares a work-queue handler: each job on a `queue.*` subject is done
/// once, by one replica of one app.
///
/// ```ignore
/// #[jetwire::queue("queue.email", max_deliver = 5, backoff = ["1s", "30s"])]
/// async fn send_email(job: SendEmail) -> Result<(), jetwire::HandlerError> {
///     Ok(())
/// }
/// ```
///
/// Options: `max_deliver`, `backoff`, `ack_wait`, `concurrency`, `timeout`,
/// `stream`, `output`, `singleton`, `partitions`. See the `jetwire` crate docs for their meaning and defaults.
#[proc_macro_attribute]
pub fn queue(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::handler(attr::Kind::Queue, args.into(), item.into()).into()
}
