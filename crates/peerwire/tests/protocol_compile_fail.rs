//! The common mistakes in a `#[peerwire::protocol]` trait are compile errors that point at the
//! method (the expected messages are the `.stderr` files beside each case).

#[test]
fn mistakes_in_a_protocol_trait_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/protocol_fail/*.rs");
}
