//! The handler declarations of the README and the crate docs, as written there.
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: u64,
    pub email: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SendEmail {
    pub to: String,
    pub body: String,
}

#[derive(Clone)]
pub struct Mailer;

impl Mailer {
    async fn send(&self, _job: &SendEmail) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// Event: every app (service) with a handler here gets its own copy.
#[subscribe("orders.created")]
async fn on_order_created(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish("queue.email", &SendEmail { to: order.email, body: "thanks".into() }).await?;
    Ok(())
}

/// Work queue: each job is done once, by one replica of one app.
#[queue("queue.email", max_deliver = 5, backoff = ["1s", "5s", "30s"], concurrency = 8)]
async fn send_email(job: SendEmail, mailer: State<Mailer>) -> Result<(), HandlerError> {
    if !job.to.contains('@') {
        return Err(HandlerError::permanent("no @ in address"));
    }
    mailer.send(&job).await?;
    Ok(())
}

fn main() {
    // The annotated fns stay plain async fns.
    let _ = send_email(SendEmail { to: "a@b".into(), body: String::new() }, State(Mailer));
    let handlers = jetwire::registry::handlers();
    assert_eq!(handlers.len(), 2);
}
