#![allow(unused_imports, dead_code)]
use jetwire::dlq::DeadLetter;
use jetwire::{subscribe, HandlerError};

#[subscribe("orders.created")]
async fn h(_letter: DeadLetter) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
