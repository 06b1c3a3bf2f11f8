#![allow(unused_imports, dead_code)]
use jetwire::{subscribe, HandlerError};

#[subscribe("orders.created", partitions = 1000)]
async fn order(_event: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
