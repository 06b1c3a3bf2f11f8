#![allow(unused_imports, dead_code)]
use jetwire::{subscribe, HandlerError};

#[subscribe("orders.created", output = "dlq.orders")]
async fn audit(n: u64) -> Result<u64, HandlerError> { Ok(n) }

fn main() {}
