//! Every accepted signature shape.
use std::sync::Arc;

use jetwire::{queue, subscribe, Context, HandlerError, Raw, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ev {
    #[allow(dead_code)]
    id: u64,
}

#[derive(Clone)]
struct Db;

#[derive(Clone)]
struct Cache(#[allow(dead_code)] Arc<String>);

#[derive(Debug)]
struct MyError;
impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mine")
    }
}
impl std::error::Error for MyError {}

// Payload only, unit return.
#[subscribe("sig.a")]
async fn payload_only(_e: Ev) {}

// Raw bytes.
#[subscribe("sig.b")]
async fn raw_bytes(raw: Raw) -> Result<(), HandlerError> {
    let _n = raw.len();
    Ok(())
}

// State before Context, several states, `mut` patterns.
#[subscribe("sig.c")]
pub async fn extractors(mut e: Ev, db: State<Db>, cache: State<Cache>, ctx: Context) {
    e.id += 1;
    let _ = (db, cache, ctx);
}

// Any error type that converts into HandlerError.
#[queue("queue.sig-d")]
pub(crate) async fn own_error(_e: Ev) -> Result<(), MyError> {
    Err(MyError)
}

// Full paths, std and serde types as payloads, wildcards.
#[subscribe("sig.*.e")]
async fn full_paths(_v: serde_json::Value, _c: jetwire::Context) -> Result<(), jetwire::HandlerError> {
    Ok(())
}

#[queue("queue.sig.>")]
async fn tail_wildcard(_v: Vec<String>, _s: jetwire::State<Db>) {}

#[subscribe("sig.f")]
async fn tuple_payload((_a, _b): (u32, String)) {}

mod nested {
    use jetwire::subscribe;

    #[subscribe("sig.nested")]
    pub async fn inside_a_module(_n: u64) {}
}

fn main() {
    let names: Vec<_> = jetwire::registry::handlers().iter().map(|h| h.name).collect();
    for expected in ["payload_only", "raw_bytes", "extractors", "own_error", "full_paths", "tail_wildcard", "tuple_payload", "inside_a_module"] {
        assert!(names.contains(&expected), "{expected} is registered");
    }
    let _ = nested::inside_a_module(1);
}
