//! Every compile error the macros can emit, with its message, and every
//! valid form of API.md. The `.stderr` snapshots are for the toolchain in
//! the README (rustc 1.95); regenerate with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
