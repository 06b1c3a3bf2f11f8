#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};

#[queue("queue.resize", output = "images.*")]
async fn resize(job: u64) -> Result<u64, HandlerError> { Ok(job) }

fn main() {}
