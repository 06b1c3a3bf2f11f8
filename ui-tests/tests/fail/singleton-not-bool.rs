#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};

#[queue("queue.report", singleton = "yes")]
async fn report(_job: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
