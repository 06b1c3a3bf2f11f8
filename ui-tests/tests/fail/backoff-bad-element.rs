#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.a", backoff = [1])]
async fn a(_e: Ev) {}

#[queue("queue.b", backoff = ["1s", "1x"])]
async fn b(_e: Ev) {}

fn main() {}
