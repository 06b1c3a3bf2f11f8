#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.email", deliver = "all")]
async fn a(_e: Ev) {}

#[queue("queue.sms", durable = "sms")]
async fn b(_e: Ev) {}

fn main() {}
