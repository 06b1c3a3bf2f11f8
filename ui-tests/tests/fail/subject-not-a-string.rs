#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[subscribe(orders)]
async fn h(_e: Ev) {}

#[subscribe(42)]
async fn g(_e: Ev) {}

#[queue("queue.a", "max_deliver" = 1)]
async fn k(_e: Ev) {}

fn main() {}
