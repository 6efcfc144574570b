//! Derive macros for `cqrs-core`.
//!
//! Use them through `cqrs-core`, which re-exports them behind its default
//! `derive` feature; generated code only names paths through that crate, so a
//! user crate needs no dependency on this one. The macros themselves arrive
//! with the derive-macros issue; this crate is the place they live.
