//! Derive and attribute macros of [cqrskit](https://docs.rs/cqrskit).
//!
//! Use them through the `cqrskit` crate, which re-exports them behind its
//! default `derive` feature (as `sqlx` re-exports its macros); the generated
//! code names everything through `::cqrskit`, so a crate that depends on
//! `cqrskit` and `serde` needs nothing else. The full documentation, with
//! examples, is on the re-exports in `cqrskit`.
//!
//! Each macro parses its input into a borrowed view, validates it (collecting
//! every mistake, each with the span of the offending tokens), and only then
//! generates code.

use proc_macro::TokenStream;

mod aggregate;
mod args;
mod command;
mod document;
mod domain_event;
mod errors;
mod event_union;
mod handler;
mod projector;
mod variants;

/// Derives `DomainEvent` for an event enum.
///
/// Generates the stored type name and schema version of every variant, the
/// `EVENT_TYPES` list (in declaration order), `decode` by stored name, and for
/// each newtype variant `From<T>` and `EventVariant<T>` (used by
/// `#[aggregate]` and `#[projector]` dispatch). When every variant is a newtype
/// variant of a distinct type, it also implements `DispatchEvent`, which
/// routes each event to an aggregate's `#[apply]` method.
///
/// Unit, tuple, newtype and struct variants are all accepted. The enum must
/// also derive serde's `Serialize` and `Deserialize` with the default
/// (externally tagged) representation: the payload stores the variant's
/// content only.
///
/// # Variant attributes
///
/// | attribute | meaning | default |
/// | --- | --- | --- |
/// | `#[event(name = "...")]` | the stored type name; keep it when renaming the variant | the variant name |
/// | `#[event(version = N)]` | the payload's schema version; stored events of a higher version are refused on read | `1` |
/// | `#[event(upcast = path)]` | `fn(stored_version: u32, payload: serde_json::Value) -> Result<serde_json::Value, E: Display>`, run on payloads stored under an older version before they are decoded | none: older payloads decode as they are |
///
/// # Example
///
/// ```
/// use cqrskit::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct ItemAdded {
///     sku: String,
///     quantity: u32,
/// }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
/// enum CartEvent {
///     ItemAdded(ItemAdded),
///     #[event(name = "CartEmptied")] // renamed in Rust; the stored name stays
///     Cleared,
///     #[event(version = 2)]
///     CheckedOut { total_cents: u64 },
/// }
///
/// assert_eq!(CartEvent::EVENT_TYPES, ["ItemAdded", "CartEmptied", "CheckedOut"]);
/// let added: CartEvent = ItemAdded { sku: "tea".into(), quantity: 2 }.into();
/// assert_eq!(added.event_type(), "ItemAdded");
/// assert_eq!(added.encode().unwrap().get(), r#"{"sku":"tea","quantity":2}"#);
/// assert_eq!(CartEvent::CheckedOut { total_cents: 5 }.event_version(), 2);
/// ```
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    domain_event::expand(&input).into()
}

/// Derives `DomainEvent` for an *event union*: an enum with one newtype
/// variant per event enum it joins, so that one projector or process manager
/// can read the events of several aggregates.
///
/// The union's stored type names are its members' (`EVENT_TYPES` joins them
/// in order; two members storing the same name do not compile); a stored
/// event decodes into the member that has its type name; a member's event
/// converts into the union with `From`. `#[projector(event = Union)]`
/// methods take the event types of any member, with the same checks as for
/// one enum: a type that is in no member does not compile, and the stores
/// deliver only the types the methods take.
///
/// The derive also writes `Serialize` and `Deserialize`, tagged by the
/// union's variant as serde tags any enum (`{"Member": <the member's
/// form>}`): do not derive them too. Stored events do not use that form:
/// they are encoded as the member's payload and decoded by type name, routed
/// to the member whose `EVENT_TYPES` has it (so a member's hand-written
/// `decode` accepting names outside its `EVENT_TYPES` is not reached for
/// those). The union cannot be generic, and joins each enum once.
///
/// # Example
///
/// ```
/// use cqrskit::{DomainEvent, EventUnion};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct BookAdded { title: String }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
/// enum BookEvent { BookAdded(BookAdded) }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
/// enum MemberEvent { Joined { name: String }, Left }
///
/// #[derive(Debug, PartialEq, EventUnion)]
/// enum LibraryEvent {
///     Book(BookEvent),
///     Member(MemberEvent),
/// }
///
/// assert_eq!(LibraryEvent::EVENT_TYPES, ["BookAdded", "Joined", "Left"]);
/// let event = LibraryEvent::decode("Joined", 1, r#"{"name":"Ada"}"#).unwrap();
/// assert_eq!(event, LibraryEvent::Member(MemberEvent::Joined { name: "Ada".into() }));
/// assert_eq!(event.event_type(), "Joined");
/// ```
#[proc_macro_derive(EventUnion)]
pub fn derive_event_union(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    event_union::expand(&input).into()
}

/// Derives `Command` for a command enum.
///
/// Generates `command_type()` (the variant name, used in traces), `From<T>`
/// for each newtype variant, and, when every variant is a newtype variant of a
/// distinct type, `DispatchCommand`, which routes each command to the
/// aggregate's `#[command]` method taking that type.
///
/// # Variant attributes
///
/// | attribute | meaning | default |
/// | --- | --- | --- |
/// | `#[command(name = "...")]` | the name `command_type()` reports | the variant name |
/// | `#[command(creates)]` | the command starts a new aggregate: `creates_aggregate()` answers `true`, so the pipeline decides it without loading (see `Command::creates_aggregate`) | not creating |
///
/// # Example
///
/// ```
/// use cqrskit::Command;
///
/// struct OpenCart;
/// struct AddItem { sku: String }
/// struct CheckOut;
///
/// #[derive(Command)]
/// enum CartCommand {
///     #[command(creates)]
///     Open(OpenCart),
///     AddItem(AddItem),
///     #[command(name = "Checkout")]
///     CheckOut(CheckOut),
/// }
///
/// let command: CartCommand = CheckOut.into();
/// assert_eq!(command.command_type(), "Checkout");
/// assert!(!command.creates_aggregate());
/// assert!(CartCommand::from(OpenCart).creates_aggregate());
/// ```
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    command::expand(&input).into()
}

/// Implements `Aggregate` from an `impl` block of handler methods.
///
/// Mark each command handler `#[command]` and each event handler `#[apply]`;
/// the handler for a command or event is chosen by the type of its `&`
/// parameter, so the command and event enums must use newtype variants
/// (`Deposit(Deposit)`) and derive `Command` / `DomainEvent`. The compiler then
/// checks that every command has exactly one handler and every event one apply
/// method, and names the missing one:
/// "`Account` has no handler for the command `Withdraw`".
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `type = "..."` | `Aggregate::TYPE`, stored in every stream id (required) |
/// | `command = T` | the command enum (required) |
/// | `event = T` | the event enum (required) |
/// | `error = T` | the domain error (required) |
/// | `services = T` | what handlers may take as second parameter (default `()`) |
/// | `snapshot_version = N` | `Aggregate::SNAPSHOT_VERSION` (default 1) |
/// | `ignore(T, ...)` | event types that do not change state: no apply method needed |
///
/// # Methods
///
/// - `#[command] fn name(&self, command: &C) -> Result<Vec<Event>, Error>`,
///   optionally `async`, optionally with a second parameter `services: &Services`;
/// - `#[apply] fn name(&mut self, event: &E)`: not async, returns nothing.
///
/// Unmarked methods are left alone, so helpers can live in the same block.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
///
/// use cqrskit::{Command, CommandPipeline, DomainEvent, InMemoryEventStore, aggregate};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct ItemAdded { sku: String }
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct CheckedOut { items: usize }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// enum CartEvent {
///     ItemAdded(ItemAdded),
///     CheckedOut(CheckedOut),
/// }
///
/// struct AddItem { sku: String }
/// struct CheckOut;
///
/// #[derive(Command)]
/// enum CartCommand {
///     AddItem(AddItem),
///     CheckOut(CheckOut),
/// }
///
/// #[derive(Debug, PartialEq, thiserror::Error)]
/// enum CartError {
///     #[error("the cart is checked out")]
///     Closed,
///     #[error("the cart is empty")]
///     Empty,
/// }
///
/// /// How many items one cart may hold, injected into the pipeline.
/// struct Limits { max_items: usize }
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Cart { items: Vec<String>, closed: bool }
///
/// #[aggregate(type = "cart", command = CartCommand, event = CartEvent, error = CartError, services = Limits)]
/// impl Cart {
///     #[command]
///     fn add(&self, command: &AddItem, limits: &Limits) -> Result<Vec<CartEvent>, CartError> {
///         if self.closed || self.items.len() >= limits.max_items {
///             return Err(CartError::Closed);
///         }
///         Ok(vec![ItemAdded { sku: command.sku.clone() }.into()])
///     }
///
///     #[command]
///     async fn check_out(&self, _: &CheckOut) -> Result<Vec<CartEvent>, CartError> {
///         match (self.closed, self.items.len()) {
///             (true, _) => Err(CartError::Closed),
///             (_, 0) => Err(CartError::Empty),
///             (_, items) => Ok(vec![CheckedOut { items }.into()]),
///         }
///     }
///
///     #[apply]
///     fn added(&mut self, event: &ItemAdded) {
///         self.items.push(event.sku.clone());
///     }
///
///     #[apply]
///     fn checked_out(&mut self, _: &CheckedOut) {
///         self.closed = true;
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let carts = CommandPipeline::<Cart>::new(Arc::new(InMemoryEventStore::new()), Limits { max_items: 5 });
/// assert_eq!(carts.execute("c1", CheckOut).await.unwrap_err().rejection(), Some(&CartError::Empty));
/// carts.execute("c1", AddItem { sku: "tea".into() }).await.unwrap();
/// carts.execute("c1", CheckOut).await.unwrap();
/// assert!(carts.load("c1").await.unwrap().state.closed);
/// # });
/// ```
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemImpl);
    aggregate::expand(args.into(), item).into()
}

/// Implements `Projector` from an `impl` block of `#[project]` methods.
///
/// Each `#[project]` method handles the event type of its `&` parameter (a
/// newtype variant of the event enum); events without a method are skipped.
/// The stored type names of the handled events become the inherent constant
/// `EVENT_TYPES`, known at compile time, and `Projector::event_types` returns
/// it, so stores deliver only those events.
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `event = T` | the event enum (required) |
/// | `name = "..."` | `Projector::name`, which keys its checkpoint (default: the type name in snake case) |
///
/// # Methods
///
/// `#[project] fn name(&self, event: &E)`, optionally `async`, optionally
/// with a second parameter `envelope: &EventEnvelope<Event>` (for the event id,
/// stream, version, metadata), returning nothing or `Result<(), Error>` with
/// any error that converts into `BoxError`.
///
/// # Example
///
/// ```
/// use std::sync::Mutex;
///
/// use cqrskit::{DomainEvent, EventEnvelope, Projector, projector};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct ItemAdded { sku: String }
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct CheckedOut { items: usize }
///
/// #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
/// enum CartEvent {
///     ItemAdded(ItemAdded),
///     CheckedOut(CheckedOut),
/// }
///
/// /// Counts checked-out items per cart; item additions are not its business.
/// #[derive(Default)]
/// struct Sales { rows: Mutex<Vec<(String, usize)>> }
///
/// #[projector(event = CartEvent)]
/// impl Sales {
///     #[project]
///     fn checked_out(&self, event: &CheckedOut, envelope: &EventEnvelope<CartEvent>) -> Result<(), String> {
///         let mut rows = self.rows.lock().map_err(|_| "poisoned".to_owned())?;
///         rows.push((envelope.stream.aggregate_id.clone(), event.items));
///         Ok(())
///     }
/// }
///
/// assert_eq!(Sales::EVENT_TYPES, ["CheckedOut"]);
/// assert_eq!(Sales::default().name(), "sales");
/// ```
#[proc_macro_attribute]
pub fn projector(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemImpl);
    projector::expand(args.into(), item).into()
}

/// Implements `Document` (a document read model) from an `impl` block of
/// `#[apply]`, `#[delete]` and `#[id]` methods.
///
/// Each `#[apply]` method changes the document by the event type of its `&`
/// parameter; a `#[delete]` method answers whether its event removes the
/// document. The document an event touches is its own stream's (the
/// aggregate id) unless an `#[id]` method for its type names the documents
/// (one or several): the read model then gathers events of many streams,
/// and runs unpartitioned. See `cqrskit::document` and the guide's
/// "Document read models".
///
/// | argument | meaning |
/// | --- | --- |
/// | `event = OrderEvent` | the event enum or union (required) |
/// | `name = "order_views"` | the read model's name: its projection and table (default: the type name in snake case) |
#[proc_macro_attribute]
pub fn document(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemImpl);
    document::expand(args.into(), item).into()
}
