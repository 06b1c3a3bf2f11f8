use jetwire::{subscribe, HandlerError};

#[subscribe("orders.created", ack = "last")]
async fn on_order(_id: u64) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe("orders.updated", ack = true)]
async fn on_update(_id: u64) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
