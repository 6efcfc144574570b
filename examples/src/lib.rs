//! Example applications built on `cqrs-core`, written to be copied from.
//!
//! Each module is one application's domain and read side; the runnable
//! programs that drive them live beside this crate (`cargo run --example
//! bank_account`).

pub mod bank_account;
