#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[derive(Clone)]
struct Db;

#[subscribe("orders.created")]
async fn h(db: State<Db>) { let _ = db; }

fn main() {}
