#![allow(dead_code)]
use jetwire::{queue, subscribe, HandlerError};

#[queue("queue.orders", partitions = 8, max_deliver = 3)]
async fn order(_job: u64) -> Result<(), HandlerError> { Ok(()) }

#[subscribe("orders.*.eu", partitions = 256)]
async fn regional(_event: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
