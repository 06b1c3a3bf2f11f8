//! Every option on both attributes, every duration unit.
use jetwire::{queue, subscribe, HandlerError};

#[subscribe(
    "orders.created",
    max_deliver = 7,
    backoff = ["250ms", "2m", "1h"],
    ack_wait = "45s",
    concurrency = 1,
    timeout = "10s",
    deliver = "all",
    durable = "billing-orders",
    stream = "ORDERS_V2",
)]
async fn on_order(_order: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe("orders.updated", deliver = "new")]
async fn on_update(_order: u64) {}

#[queue(
    "queue.email",
    max_deliver = 1,
    ack_wait = "1m",
    concurrency = 10000,
    timeout = "1h",
    stream = "JOBS",
)]
async fn send(_job: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.sms", max_deliver = 2, backoff = ["0s"])]
async fn sms(_job: u64) {}

fn main() {
    let all = jetwire::registry::handlers();
    let on_order = all.iter().find(|h| h.name == "on_order").expect("registered");
    assert_eq!(on_order.max_deliver(), 7);
    assert_eq!(on_order.concurrency(), 1);
    assert_eq!(on_order.ack_wait(), std::time::Duration::from_secs(45));
    assert_eq!(on_order.backoff().len(), 3);
    let send = all.iter().find(|h| h.name == "send").expect("registered");
    assert!(send.backoff().is_empty(), "the default backoff is cut to fit max_deliver = 1");
}
