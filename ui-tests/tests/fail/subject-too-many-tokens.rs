#![allow(unused_imports, dead_code)]
use jetwire::{queue, subscribe, Context, HandlerError, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev { id: u64 }

#[subscribe("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q")]
async fn h(_e: Ev) {}

fn main() {}
