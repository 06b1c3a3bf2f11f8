//! Handlers given in code: [`App::subscribe`], [`App::queue`] and their
//! `_with` forms.

use std::panic::Location;

use crate::app::App;
use crate::handler::configured::{self, Handler};
use crate::handler::options::HandlerOptions;
use crate::names::Kind;

impl App {
    /// Runs `handler` for the events on `subject`, as
    /// `#[subscribe(subject)]` on it would: a plain async fn, its subject
    /// from configuration. Subject and options are checked at
    /// [`App::start`], which fails naming the handler and the rule.
    ///
    /// ```
    /// use jetwire::{Context, HandlerError};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct OrderCreated { order_id: u64 }
    ///
    /// async fn on_order(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    ///     tracing::info!(order = order.order_id, message = ctx.message_id(), "created");
    ///     Ok(())
    /// }
    ///
    /// let subject = std::env::var("ORDERS_SUBJECT").unwrap_or("orders.created".into());
    /// let config = jetwire::Config::builder().app("billing").build().unwrap();
    /// let app = jetwire::App::new(config).subscribe(&subject, on_order);
    /// # drop(app);
    /// ```
    #[track_caller]
    pub fn subscribe<H: Handler<A>, A>(self, subject: &str, handler: H) -> App {
        self.add(Kind::Subscribe, subject, handler, HandlerOptions::new())
    }

    /// [`App::subscribe`] with the options the attribute would take.
    #[track_caller]
    pub fn subscribe_with<H: Handler<A>, A>(
        self,
        subject: &str,
        handler: H,
        options: HandlerOptions,
    ) -> App {
        self.add(Kind::Subscribe, subject, handler, options)
    }

    /// Runs `handler` for the jobs on work-queue `subject`, as
    /// `#[queue(subject)]` on it would.
    ///
    /// ```
    /// use jetwire::{HandlerError, HandlerOptions};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct SendEmail { to: String }
    ///
    /// async fn send_email(job: SendEmail) -> Result<(), HandlerError> {
    ///     tracing::info!(to = %job.to, "sent");
    ///     Ok(())
    /// }
    ///
    /// let config = jetwire::Config::builder().app("mailer").build().unwrap();
    /// let app = jetwire::App::new(config).queue_with(
    ///     "queue.email",
    ///     send_email,
    ///     HandlerOptions::new().max_deliver(5).backoff(["1s", "30s"]).concurrency(8),
    /// );
    /// # drop(app);
    /// ```
    #[track_caller]
    pub fn queue<H: Handler<A>, A>(self, subject: &str, handler: H) -> App {
        self.add(Kind::Queue, subject, handler, HandlerOptions::new())
    }

    /// [`App::queue`] with the options the attribute would take.
    #[track_caller]
    pub fn queue_with<H: Handler<A>, A>(
        self,
        subject: &str,
        handler: H,
        options: HandlerOptions,
    ) -> App {
        self.add(Kind::Queue, subject, handler, options)
    }

    #[track_caller]
    fn add<H: Handler<A>, A>(
        mut self,
        kind: Kind,
        subject: &str,
        handler: H,
        options: HandlerOptions,
    ) -> App {
        match configured::register(kind, subject, handler, options, Location::caller()) {
            Ok(def) => self.handlers.push(def),
            Err(mistake) => self.mistakes.push(mistake),
        }
        self
    }
}
