#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};

struct Resized { width: u32 }

#[queue("queue.resize", output = "images.resized")]
async fn resize(_job: u64) -> Result<Resized, HandlerError> { Ok(Resized { width: 1 }) }

fn main() {}
