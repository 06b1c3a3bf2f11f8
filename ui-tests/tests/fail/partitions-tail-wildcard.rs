#![allow(unused_imports, dead_code)]
use jetwire::{subscribe, HandlerError};

#[subscribe("orders.>", partitions = 8)]
async fn order(_event: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
