#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};

#[queue("queue.orders", singleton = true, partitions = 8)]
async fn order(_job: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
