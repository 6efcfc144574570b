//! Example applications built on `cqrskit`, written to be copied from.
//!
//! Each module is one application's domain and read side; the runnable
//! programs that drive them live beside this crate (`cargo run --example
//! bank_account`).

pub mod bank_account;
pub mod ecommerce;
pub mod http_service;
pub mod integration;

// The README's and the guide's code blocks compile as doc tests of this
// crate, so the documentation cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/macros.md")]
struct MacrosGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/postgres.md")]
struct PostgresGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/testing.md")]
struct TestingGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/versioning.md")]
struct VersioningGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/getting-started.md")]
struct GettingStartedDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/performance.md")]
struct PerformanceDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/integration.md")]
struct IntegrationGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/scaling.md")]
struct ScalingGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/operations.md")]
struct OperationsGuideDoctests;
