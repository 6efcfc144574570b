//! Event sourcing and CQRS for Rust.
//!
//! Write plain domain types: an event enum ([`DomainEvent`]), an aggregate that
//! decides and evolves ([`Aggregate`]), and projectors that keep read models up
//! to date ([`Projector`]). A [`CommandPipeline`] carries out commands against
//! an [`EventStore`]: [`InMemoryEventStore`], for tests and demos, or the
//! PostgreSQL store of the `postgres` feature in production. Both keep the same
//! promises: optimistic concurrency on every append, versions with no holes,
//! and a global log that readers tail without ever skipping an event.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use cqrskit::{Command, CommandError, CommandPipeline, DomainEvent, InMemoryEventStore, aggregate};
//! use serde::{Deserialize, Serialize};
//!
//! // Events: one type per fact, gathered in an enum.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Credited { amount: u64 }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Debited { amount: u64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! enum WalletEvent {
//!     Credited(Credited),
//!     Debited(Debited),
//! }
//!
//! // Commands: one type per intent, gathered in an enum.
//! struct Credit { amount: u64 }
//! struct Debit { amount: u64 }
//!
//! #[derive(Command)]
//! enum WalletCommand {
//!     Credit(Credit),
//!     Debit(Debit),
//! }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! #[error("insufficient funds: balance {balance}, asked {asked}")]
//! struct InsufficientFunds { balance: u64, asked: u64 }
//!
//! // The aggregate: handlers decide, apply methods evolve the state.
//! #[derive(Default, Serialize, Deserialize)]
//! struct Wallet { balance: u64 }
//!
//! #[aggregate(type = "wallet", command = WalletCommand, event = WalletEvent, error = InsufficientFunds)]
//! impl Wallet {
//!     #[command]
//!     fn credit(&self, command: &Credit) -> Result<Vec<WalletEvent>, InsufficientFunds> {
//!         Ok(vec![Credited { amount: command.amount }.into()])
//!     }
//!
//!     #[command]
//!     fn debit(&self, &Debit { amount }: &Debit) -> Result<Vec<WalletEvent>, InsufficientFunds> {
//!         if amount > self.balance {
//!             return Err(InsufficientFunds { balance: self.balance, asked: amount });
//!         }
//!         Ok(vec![Debited { amount }.into()])
//!     }
//!
//!     #[apply]
//!     fn credited(&mut self, event: &Credited) {
//!         self.balance += event.amount;
//!     }
//!
//!     #[apply]
//!     fn debited(&mut self, event: &Debited) {
//!         self.balance -= event.amount;
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let wallets = CommandPipeline::<Wallet>::new(Arc::new(InMemoryEventStore::new()), ());
//!
//! wallets.execute("alice", Credit { amount: 100 }).await?;
//! let outcome = wallets.execute("alice", Debit { amount: 30 }).await?;
//! assert_eq!(outcome.version, 2);
//!
//! let refused = wallets.execute("alice", Debit { amount: 500 }).await;
//! assert!(matches!(refused, Err(CommandError::Rejected(InsufficientFunds { balance: 70, .. }))));
//!
//! assert_eq!(wallets.load("alice").await?.state.balance, 70);
//! assert_eq!(wallets.load_at("alice", 1).await?.state.balance, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The macros (`DomainEvent`, `EventUnion`, `Command`, `aggregate`, `projector`) come with
//! the default `derive` feature; every trait they implement can also be
//! implemented by hand (see [`DomainEvent`] and [`dispatch`]).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `derive` | yes | the macros `DomainEvent`, `EventUnion`, `Command`, `aggregate` and `projector` |
//! | `postgres` | no | `cqrskit::postgres`: the PostgreSQL event store, snapshots, checkpoints and the projection runner |
//! | `nats` | no | `cqrskit::nats`: integration events over NATS JetStream (a relay from the PostgreSQL log, CloudEvents on the wire, consumers applying each message once in effect; implies `postgres`) |
//! | `testing` | no | `cqrskit::postgres::testing`: a store in a fresh schema per test, and running a projection until it has caught up (for an application's own tests; implies `postgres`) |
//!
//! This crate is the only one to depend on. It re-exports `cqrskit-core` (the
//! model), `cqrskit-macros`, `cqrskit-postgres` and `cqrskit-nats`, whose versions always move
//! together with it; the code the macros generate names items through
//! `::cqrskit`.
//!
//! # Modules at a glance
//!
//! - events: [`DomainEvent`], [`EventEnvelope`], [`Metadata`], [`codec`];
//! - the write side: [`Aggregate`], [`Command`], [`CommandPipeline`],
//!   [`RetryPolicy`], [`SnapshotPolicy`];
//! - storage: [`EventStore`], [`ExpectedVersion`], [`Position`], [`LogFilter`],
//!   [`InMemoryEventStore`];
//! - the read side: [`Projector`], [`catch_up`], [`Query`], [`QueryHandler`],
//!   and document read models written without SQL ([`document`](mod@document), `#[document]`);
//! - the macros' machinery: [`dispatch`];
//! - tests of domain logic: [`testing::AggregateFixture`];
//! - production storage: `cqrskit::postgres` (feature `postgres`);
//! - integration events between services: `cqrskit::nats` (feature `nats`);
//! - the application host, which runs projections, process managers,
//!   deadlines, consumers and an HTTP server with one shutdown: [`host`];
//!   HTTP services on axum: `cqrskit::http` (feature `axum`);
//! - the guides, from a first service to operating one: [`guide`].

pub use cqrskit_core::*;

#[cfg(feature = "derive")]
pub use cqrskit_macros::{Command, DomainEvent, EventUnion, aggregate, document, projector};

#[cfg(feature = "postgres")]
#[doc(inline)]
pub use cqrskit_postgres as postgres;

#[cfg(feature = "nats")]
#[doc(inline)]
pub use cqrskit_nats as nats;

#[cfg(feature = "axum")]
pub mod http;

/// The guides, where the API is: from a first service to running one in
/// production. Every code block in them compiles (and most run) as a doc
/// test of this crate, so they cannot drift from the API. The same pages
/// are the repository's `docs/` folder.
#[allow(rustdoc::broken_intra_doc_links)]
pub mod guide {
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/getting-started.md"))]
    pub mod getting_started {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/concepts.md"))]
    pub mod concepts {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/macros.md"))]
    pub mod macros {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/testing.md"))]
    pub mod testing {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/postgres.md"))]
    pub mod postgres {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/read-models.md"))]
    pub mod read_models {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/versioning.md"))]
    pub mod versioning {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/integration.md"))]
    pub mod integration {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/scaling.md"))]
    pub mod scaling {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/operations.md"))]
    pub mod operations {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/performance.md"))]
    pub mod performance {}

    #[doc = include_str!(concat!(env!("OUT_DIR"), "/comparison.md"))]
    pub mod comparison {}
}
