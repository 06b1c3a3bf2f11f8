#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

struct Svc;

impl Svc {
    #[subscribe("orders.created")]
    async fn h(&self, _e: Ev) {}
}

fn main() {}
