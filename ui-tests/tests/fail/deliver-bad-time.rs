#![allow(unused_imports, dead_code)]
use jetwire::{subscribe, HandlerError};

#[subscribe("orders.created", deliver = "2026-02-30T00:00:00Z")]
async fn h(_e: u64) {}

#[subscribe("orders.updated", deliver = "seq:0")]
async fn g(_e: u64) {}

fn main() {}
