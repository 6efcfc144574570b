//! Compile tests: every form that must compile (and run correctly), and every
//! misuse that must fail with the error committed next to it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/ui/*.rs");
}
