// `ack = "first"` runs a message at most once: retries and an output
// (published before the ack) cannot go with it.
use jetwire::{queue, HandlerError};

#[queue("queue.sms", ack = "first", max_deliver = 3, backoff = ["1s"])]
async fn send_sms(_to: String) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.resize", ack = "first", output = "images.resized")]
async fn resize(_id: u64) -> Result<u64, HandlerError> {
    Ok(1)
}

fn main() {}
