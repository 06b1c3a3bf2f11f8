#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[subscribe(".orders")]
async fn a(_e: Ev) {}

#[subscribe("orders..created")]
async fn b(_e: Ev) {}

#[subscribe("orders.")]
async fn c(_e: Ev) {}

fn main() {}
