#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[subscribe("orders.created")]
async fn holds_an_rc(_e: Ev) {
    let rc = std::rc::Rc::new(1);
    std::future::ready(()).await;
    drop(rc);
}

fn main() {}
