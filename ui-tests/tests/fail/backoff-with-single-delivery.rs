#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.email", max_deliver = 1, backoff = ["1s"])]
async fn h(_e: Ev) {}

fn main() {}
