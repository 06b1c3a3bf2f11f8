//! Generates 200 handlers for the startup scenario.
use std::fmt::Write;

fn main() {
    let mut src = String::new();
    for i in 0..200 {
        writeln!(
            src,
            "#[jetwire::subscribe(\"startup.h{i}\")]\nasync fn startup_h{i}(_m: crate::setup::Msg) {{}}"
        )
        .ok();
    }
    writeln!(src, "pub(crate) const STARTUP_HANDLERS: usize = 200;").ok();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("startup_handlers.rs");
    std::fs::write(out, src).expect("write generated handlers");
}
