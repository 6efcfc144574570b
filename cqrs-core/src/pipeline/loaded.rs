//! What loading an aggregate gives: its state and the version it reflects.

/// An aggregate's state together with the stream version it reflects.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The version of the last event applied (0 = no event).
    pub version: u64,
}
