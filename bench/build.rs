//! Generates 200 handlers for the startup and many-handlers scenarios;
//! each counts what it handles (`setup::seen_by`).
use std::fmt::Write;

fn main() {
    let mut src = String::new();
    for i in 0..200 {
        writeln!(
            src,
            "#[jetwire::subscribe(\"startup.h{i}\", deliver = \"all\")]\nasync fn startup_h{i}(_m: crate::setup::Msg) {{ crate::setup::seen_by({i}); }}"
        )
        .ok();
    }
    writeln!(src, "pub(crate) const STARTUP_HANDLERS: usize = 200;").ok();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("startup_handlers.rs");
    std::fs::write(out, src).expect("write generated handlers");
}
