//! The traits behind the derive macros: type-directed dispatch of commands
//! and events to handler methods.
//!
//! Commands and events that take part in dispatch are *newtype variants*
//! (`Deposit(Deposit)`), one Rust type per command or event, as in Axon. A
//! handler is chosen by the type it takes, so the compiler checks that every
//! command and every event has exactly one handler, and says which is missing:
//!
//! - `#[derive(Command)]` and `#[derive(DomainEvent)]` on the enums implement
//!   [`DispatchCommand`] / [`DispatchEvent`], which route each variant to
//!   [`HandleCommand`] / [`ApplyEvent`] of the variant's type;
//! - `#[aggregate]` on the aggregate's `impl` block implements those for each
//!   method marked `#[command]` or `#[apply]`, and implements
//!   [`Aggregate`] on top;
//! - `#[projector]` on a projector's `impl` block dispatches the event types it
//!   has methods for, through [`EventVariant`], and skips the others.
//!
//! You can implement these traits by hand too; the macros write nothing you
//! could not.

use std::future::Future;

use crate::{Aggregate, DomainEvent};

/// An aggregate's handler for the command type `C`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no handler for the command `{C}`",
    label = "no method marked `#[command]` takes `&{C}`",
    note = "add `#[command] fn ...(&self, command: &{C}) -> Result<Vec<Event>, Error>` to the `#[aggregate]` impl of `{Self}`"
)]
pub trait HandleCommand<C>: Aggregate {
    /// Decides the events for `command`.
    fn handle_command(
        &self,
        command: &C,
        services: &Self::Services,
    ) -> impl Future<Output = Result<Vec<Self::Event>, Self::Error>> + Send;
}

/// An aggregate's handler for the event type `E`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no apply method for the event `{E}`",
    label = "no method marked `#[apply]` takes `&{E}`",
    note = "add `#[apply] fn ...(&mut self, event: &{E})` to the `#[aggregate]` impl of `{Self}`, or list the event in `#[aggregate(ignore({E}))]` if it does not change state"
)]
pub trait ApplyEvent<E>: Aggregate {
    /// Evolves the state by `event`.
    fn apply_event(&mut self, event: &E);
}

/// A command enum that routes each variant to the aggregate's handler for the
/// variant's type. Written by `#[derive(Command)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot dispatch to the handlers of `{A}`",
    note = "derive `Command` on `{Self}`; every variant must be a newtype variant (`Deposit(Deposit)`) whose type has a `#[command]` method on `{A}`"
)]
pub trait DispatchCommand<A: Aggregate<Command = Self>>: Sized {
    /// Calls the handler for this command's variant.
    fn dispatch(
        &self,
        aggregate: &A,
        services: &A::Services,
    ) -> impl Future<Output = Result<Vec<A::Event>, A::Error>> + Send;
}

/// An event enum that routes each variant to the aggregate's apply method for
/// the variant's type. Written by `#[derive(DomainEvent)]` when every variant
/// is a newtype variant.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot dispatch to the apply methods of `{A}`",
    note = "derive `DomainEvent` on `{Self}`; for `#[aggregate]` dispatch every variant must be a newtype variant (`DepositMade(DepositMade)`)"
)]
pub trait DispatchEvent<A: Aggregate<Event = Self>>: DomainEvent {
    /// Calls the apply method for this event's variant.
    fn dispatch(&self, aggregate: &mut A);
}

/// `T` is the content of one newtype variant of the event enum `Self`.
/// Written by `#[derive(DomainEvent)]` for each newtype variant.
#[diagnostic::on_unimplemented(
    message = "`{T}` is not an event of `{Self}`",
    label = "no newtype variant of `{Self}` holds `{T}`",
    note = "a `#[projector]` or `#[aggregate]` method can only take the type of a newtype variant of the event enum"
)]
pub trait EventVariant<T>: DomainEvent {
    /// The stored type name of that variant.
    const EVENT_TYPE: &'static str;

    /// The content, when `self` is that variant.
    fn as_variant(&self) -> Option<&T>;
}
