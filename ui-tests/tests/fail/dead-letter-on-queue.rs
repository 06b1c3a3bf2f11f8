#![allow(unused_imports, dead_code)]
use jetwire::dlq::DeadLetter;
use jetwire::{queue, HandlerError};

#[queue("queue.alerts")]
async fn h(_letter: DeadLetter) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
