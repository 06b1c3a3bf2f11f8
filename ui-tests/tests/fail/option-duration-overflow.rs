#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.a", timeout = "99999999999999999999h")]
async fn a(_e: Ev) {}

fn main() {}
