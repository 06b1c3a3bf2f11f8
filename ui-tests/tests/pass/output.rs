#![allow(dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError};
use serde::Serialize;

#[derive(Serialize)]
struct Resized { width: u32 }

#[queue("queue.resize", output = "images.resized", max_deliver = 3)]
async fn resize(job: u32, _ctx: Context) -> Result<Resized, HandlerError> {
    Ok(Resized { width: job })
}

#[subscribe("orders.created", output = "audit.orders")]
async fn audit(n: u64) -> Result<String, std::io::Error> {
    Ok(format!("order {n}"))
}

fn main() {}
