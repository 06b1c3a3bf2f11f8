#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[subscribe("*.created")]
async fn a(_e: Ev) {}

#[subscribe(">")]
async fn b(_e: Ev) {}

fn main() {}
