#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("orders..created", max_delivery = 3, ack_wait = "soon")]
fn h(ctx: Context) { let _ = ctx; }

fn main() {}
