//! The end-to-end harness lives in the `stella-test-support` crate
//! (`tests/support`); the e2e files reach it through `common::*`.

#[allow(unused_imports)]
pub use stella_test_support::*;
