//! What a runner learns while it runs, apart from what it was made with:
//! the lease it holds, the batches it read ahead, the streams it holds
//! back, the pace of its batches, whether its projector was set up.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use super::held::HeldStreams;
use super::pace::Pace;
use super::read_ahead::Prefetched;
use crate::projection::projection_row::Lease;

/// A runner's state while it runs, for events of type `E`.
pub(super) struct RunState<E> {
    /// The lease it holds, if any.
    pub(super) lease: Mutex<Option<Lease>>,
    /// Batches read ahead, in log order (see `read_ahead`).
    pub(super) prefetched: Mutex<VecDeque<Prefetched<E>>>,
    /// Whether the projector's setup hook ran since the runner was made.
    pub(super) set_up: AtomicBool,
    /// The streams held back behind a parked event.
    pub(super) held: HeldStreams,
    /// How far below the configured size batches are (see `pace`).
    pub(super) pace: Pace,
}

impl<E> Default for RunState<E> {
    /// Nothing held, read or learnt yet.
    fn default() -> Self {
        Self {
            lease: Mutex::new(None),
            prefetched: Mutex::new(VecDeque::new()),
            set_up: AtomicBool::new(false),
            held: HeldStreams::default(),
            pace: Pace::default(),
        }
    }
}
