#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};

#[queue("queue.resize", output = "images.resized")]
async fn resize(_job: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
