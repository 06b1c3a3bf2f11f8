#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[subscribe("orders.created", durable = 5)]
async fn a(_e: Ev) {}

#[subscribe("orders.updated", deliver = all)]
async fn b(_e: Ev) {}

fn main() {}
