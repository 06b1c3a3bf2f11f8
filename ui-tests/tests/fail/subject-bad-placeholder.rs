#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};

#[queue("queue.render.{grp}")]
async fn render(_job: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
