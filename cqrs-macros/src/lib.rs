//! Derive and attribute macros for `cqrs-core`.
//!
//! Use them through `cqrs-core`, which re-exports them behind its default
//! `derive` feature (as `serde` re-exports `serde_derive`); the generated code
//! names everything through `::cqrs_core`, so a crate that depends on
//! `cqrs-core` and `serde` needs nothing else. The full documentation, with
//! examples, is on the re-exports in `cqrs_core`.
//!
//! Each macro parses its input into a borrowed view, validates it (collecting
//! every mistake, each with the span of the offending tokens), and only then
//! generates code.

use proc_macro::TokenStream;

mod aggregate;
mod args;
mod command;
mod domain_event;
mod errors;
mod handler;
mod projector;
mod variants;

/// Implements `DomainEvent` for an enum, with `From` for newtype variants.
/// Documented on `cqrs_core::DomainEvent`.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    domain_event::expand(&input).into()
}

/// Implements `Command` for an enum, with `From` for newtype variants and
/// dispatch to an aggregate's handlers. Documented on `cqrs_core::Command`.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    command::expand(&input).into()
}

/// Implements `Aggregate` from an `impl` block of `#[command]` and `#[apply]`
/// methods. Documented on `cqrs_core::aggregate`.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemImpl);
    aggregate::expand(args.into(), item).into()
}

/// Implements `Projector` from an `impl` block of `#[project]` methods.
/// Documented on `cqrs_core::projector`.
#[proc_macro_attribute]
pub fn projector(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemImpl);
    projector::expand(args.into(), item).into()
}
