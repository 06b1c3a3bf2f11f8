use jetwire::{Context, HandlerError, State, queue, subscribe};
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
pub struct Mailer {/* an SMTP client */}

/// Event: every app (service) with a handler here gets its own copy;
/// the replicas of one app share the work.
#[subscribe("orders.created")]
async fn on_order_created(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish(
        "queue.email",
        &SendEmail {
            to: order.email,
            body: "thanks".into(),
        },
    )
    .await?;
    Ok(())
}

/// Work queue: each job is done once, by one replica of one app.
#[queue("queue.email", max_deliver = 5, backoff = ["1s", "5s", "30s"], concurrency = 8)]
async fn send_email(job: SendEmail, _mailer: State<Mailer>) -> Result<(), HandlerError> {
    if !job.to.contains('@') {
        return Err(HandlerError::permanent("no @ in address")); // dead-lettered now
    }
    // mailer.send(&job).await?;  // any std error is transient: retried with backoff
    println!("emailed {}: {}", job.to, job.body);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), jetwire::Error> {
    let running = jetwire::App::new(jetwire::Config::from_env()?)
        .state(Mailer {})
        .start()
        .await?;
    let order = OrderCreated {
        order_id: 1,
        email: "ada@example.com".into(),
    };
    running
        .publisher()
        .publish("orders.created", &order)
        .await?;
    running.run_until_signal().await // Ctrl-C drains and stops
}
