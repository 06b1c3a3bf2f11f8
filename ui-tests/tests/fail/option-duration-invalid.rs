#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[queue("queue.a", ack_wait = "30")]
async fn a(_e: Ev) {}

#[queue("queue.b", timeout = "5sec")]
async fn b(_e: Ev) {}

#[queue("queue.c", timeout = "1.5s")]
async fn c(_e: Ev) {}

#[queue("queue.d", ack_wait = "")]
async fn d(_e: Ev) {}

#[queue("queue.e", ack_wait = "s")]
async fn e(_e: Ev) {}

fn main() {}
