#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.a", max_deliver = 3, backoff = ["1s", "2s", "3s"])]
async fn a(_e: Ev) {}

#[queue("queue.b", backoff = ["1s", "2s", "3s", "4s", "5s"])]
async fn b(_e: Ev) {}

fn main() {}
