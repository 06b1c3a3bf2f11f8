#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.a", timeout = "0s")]
async fn a(_e: Ev) {}

#[queue("queue.b", ack_wait = "0ms")]
async fn b(_e: Ev) {}

fn main() {}
