//! Example applications built on `cqrskit`, written to be copied from.
//!
//! Each module is one application's domain and read side; the runnable
//! programs that drive them live beside this crate (`cargo run --example
//! bank_account`).

pub mod bank_account;
pub mod ecommerce;
pub mod http_service;
pub mod integration;

/// Installs the log output every example uses: lines on standard error,
/// filtered by `RUST_LOG` (`info,sqlx=warn` when unset: sqlx logs
/// the server's notices at info; `RUST_LOG=cqrskit=debug`
/// shows each batch a runner applies). An application does the same in its
/// `main`: without a subscriber, the framework's logs of retries, parked
/// events and lease changes go nowhere.
pub fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // A second call (tests, several examples in one process) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

// The README's code blocks compile as doc tests of this crate (the guides'
// compile as doc tests of `cqrskit`, whose `guide` module holds them), so
// the documentation cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
