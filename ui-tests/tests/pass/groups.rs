#![allow(dead_code)]
use jetwire::{queue, subscribe, HandlerError};

#[queue("queue.render.{group}", concurrency = 2)]
async fn render(_job: u64) -> Result<(), HandlerError> { Ok(()) }

#[subscribe("frames.{group}.done")]
async fn frame_done(_n: u64) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
