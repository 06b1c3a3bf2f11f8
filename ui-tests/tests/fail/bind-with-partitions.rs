// `bind = true` adopts one durable; `partitions` makes one per partition.
use jetwire::{queue, subscribe, HandlerError};

#[queue("queue.orders.*", partitions = 4, bind = true)]
async fn by_customer(_id: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe("orders.created", bind = "yes")]
async fn on_order(_id: u64) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
