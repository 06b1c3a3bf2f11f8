#![allow(unused_imports, dead_code)]
use jetwire::{queue, HandlerError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("dlq.jobs", stream = "LEGACY")]
async fn h(_e: Ev) -> Result<(), HandlerError> { Ok(()) }

fn main() {}
