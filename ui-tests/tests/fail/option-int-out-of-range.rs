#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.a", max_deliver = 0)]
async fn a(_e: Ev) {}

#[queue("queue.b", concurrency = 100000)]
async fn b(_e: Ev) {}

#[queue("queue.c", max_deliver = -1)]
async fn c(_e: Ev) {}

fn main() {}
