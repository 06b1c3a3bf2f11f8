#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.email", max_deliver = "5")]
async fn a(_e: Ev) {}

#[queue("queue.sms", concurrency = 2.5)]
async fn b(_e: Ev) {}

fn main() {}
