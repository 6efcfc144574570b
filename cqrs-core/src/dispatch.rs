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
//!
//! # Event unions
//!
//! A projector or process manager that reads several aggregates' events
//! (loans by member, with each book's title) takes an *event union*: an enum
//! with one newtype variant per event enum, `#[derive(EventUnion)]`. It is a
//! [`DomainEvent`] whose type names are its members', and it implements
//! [`EventVariant<T, Member<N, V>>`](EventVariant) for every `T` its `N`th
//! member holds, so `#[projector(event = Union)]` methods take the members'
//! event types directly, checked and filtered as for one enum.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;

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

/// `T` is the content of one newtype variant of the event enum `Self`, or,
/// for an [event union](crate::dispatch#event-unions), of one of its member
/// enums.
///
/// `Via` says where `T` sits: [`Direct`] in the enum itself (what
/// `#[derive(DomainEvent)]` writes for each newtype variant), [`Member`]
/// `<N, V>` in the `N`th member enum of a union, found there via `V`. Code
/// never names it: callers leave it to inference
/// (`<E as EventVariant<T, _>>::EVENT_TYPE`, as `#[projector]` writes),
/// which finds the one place `T` sits, and refuses to compile when there is
/// none, or more than one (the same type in two member enums).
///
/// Generic code bounded by `E: EventVariant<T>` accepts only enums that hold
/// `T` themselves (`Via = Direct`); to accept unions too, leave `Via`
/// generic: `fn f<E: EventVariant<T, V>, T, V>(...)`.
#[diagnostic::on_unimplemented(
    message = "`{T}` is not an event of `{Self}`",
    label = "no newtype variant of `{Self}` (or of its member enums) holds `{T}`",
    note = "a `#[projector]` or `#[aggregate]` method can only take the type of a newtype variant of the event enum, or of one of the enums an `EventUnion` joins"
)]
pub trait EventVariant<T, Via = Direct>: DomainEvent {
    /// The stored type name of that variant.
    const EVENT_TYPE: &'static str;

    /// The content, when `self` is that variant.
    fn as_variant(&self) -> Option<&T>;
}

/// [`EventVariant`]'s `Via` for a type held by a newtype variant of the
/// enum itself.
#[derive(Debug)]
pub enum Direct {}

/// [`EventVariant`]'s `Via` for a type held by the `N`th member enum of an
/// event union (counted from 0 in declaration order), where it sits via `V`.
#[derive(Debug)]
pub struct Member<const N: usize, V>(PhantomData<V>, Infallible);

/// The stored type names of an event union's member enums, in order, as one
/// array of `N` names. Written into `EVENT_TYPES` by `#[derive(EventUnion)]`.
///
/// # Panics
///
/// At compile time (it runs in a constant), when `N` is not the total number
/// of names, or when two members store the same type name: a stored event of
/// that name could then not be told apart.
#[must_use]
pub const fn union_event_types<const N: usize>(
    members: &[&'static [&'static str]],
) -> [&'static str; N] {
    let mut names = [""; N];
    let mut filled = 0;
    let mut member = 0;
    while member < members.len() {
        let mut index = 0;
        while index < members[member].len() {
            let name = members[member][index];
            let mut earlier = 0;
            while earlier < filled {
                assert!(
                    !same_str(names[earlier], name),
                    "two event types of an event union's members store the same name: rename one with #[event(name = \"...\")]"
                );
                earlier += 1;
            }
            assert!(
                filled < N,
                "an event union's length is not its members' total"
            );
            names[filled] = name;
            filled += 1;
            index += 1;
        }
        member += 1;
    }
    assert!(
        filled == N,
        "an event union's length is not its members' total"
    );
    names
}

const fn same_str(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    let mut index = 0;
    while index < left.len() {
        if left[index] != right[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// The `DispatchEvent` impl the `DomainEvent` derive asks for, written
/// here rather than by the derive: rustc answers an unmet bound of an impl
/// a derive wrote with "consider manually implementing", which is not the
/// fix (the fix is the missing `#[apply]` it reports above).
#[doc(hidden)]
#[macro_export]
macro_rules! __dispatch_event_impl {
    ($name:ident { $($variant:ident($ty:ty)),* $(,)? }) => {
        impl<__A> $crate::dispatch::DispatchEvent<__A> for $name
        where
            __A: $crate::Aggregate<Event = Self> $(+ $crate::dispatch::ApplyEvent<$ty>)*,
        {
            fn dispatch(&self, aggregate: &mut __A) {
                match self {
                    $(Self::$variant(event) => {
                        $crate::dispatch::ApplyEvent::<$ty>::apply_event(aggregate, event)
                    })*
                }
            }
        }
    };
}

/// The `DispatchCommand` impl the `Command` derive asks for (written here
/// for the reason given at `__dispatch_event_impl`).
#[doc(hidden)]
#[macro_export]
macro_rules! __dispatch_command_impl {
    ($name:ident { $($variant:ident($ty:ty)),* $(,)? }) => {
        impl<__A> $crate::dispatch::DispatchCommand<__A> for $name
        where
            __A: $crate::Aggregate<Command = Self> $(+ $crate::dispatch::HandleCommand<$ty>)*,
        {
            fn dispatch(
                &self,
                aggregate: &__A,
                services: &<__A as $crate::Aggregate>::Services,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<
                    ::std::vec::Vec<<__A as $crate::Aggregate>::Event>,
                    <__A as $crate::Aggregate>::Error,
                >,
            > + ::core::marker::Send {
                async move {
                    match self {
                        $(Self::$variant(command) => {
                            $crate::dispatch::HandleCommand::<$ty>::handle_command(
                                aggregate, command, services,
                            )
                            .await
                        })*
                    }
                }
            }
        }
    };
}
