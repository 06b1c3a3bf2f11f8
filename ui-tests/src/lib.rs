//! Compile-fail and compile-pass tests of jetwire's macros: see `tests/ui.rs`.
