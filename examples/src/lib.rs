//! Example applications built on `cqrskit`, written to be copied from.
//!
//! Each module is one application's domain and read side; the runnable
//! programs that drive them live beside this crate (`cargo run --example
//! bank_account`).

pub mod bank_account;
pub mod ecommerce;
pub mod http_service;
pub mod integration;

// The README's code blocks compile as doc tests of this crate (the guides'
// compile as doc tests of `cqrskit`, whose `guide` module holds them), so
// the documentation cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
