//! Batches that shrink when they take too long: the runner's statements are
//! bounded (a third of the lease, see `session`), and a batch of large
//! events that cannot be read within the bound on a busy machine would fail
//! every time, where a smaller one passes. A batch that fails for taking
//! too long halves the next ones (down to one event); every few batches
//! that go through, they grow back toward the configured size.

use std::sync::atomic::{AtomicU32, Ordering};

use cqrskit_core::StoreError;

use crate::error::Error;
use crate::projection::policy::RunnerOptions;

/// Batches that go through before the next ones grow back a step.
const GROW_AFTER: u32 = 8;

/// How far below the configured size the runner's batches are.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// The configured size is divided by 2 to this power.
    halvings: AtomicU32,
    /// Batches that went through since the last change.
    through: AtomicU32,
}

impl Pace {
    /// The rows and payload bytes of the next batch: the configured ones,
    /// halved as often as batches took too long (at least one row).
    pub(super) fn limits(&self, options: &RunnerOptions) -> (usize, usize) {
        let halvings = self.halvings.load(Ordering::Relaxed).min(usize::BITS - 1);
        (
            (options.batch_size.max(1) >> halvings).max(1),
            (options.batch_bytes >> halvings).max(1),
        )
    }

    /// Halves the next batches after one took too long; `false` when they
    /// are one event already (nothing smaller would help: a batch's first
    /// event is read whatever its size).
    pub(super) fn slow_down(&self, options: &RunnerOptions) -> bool {
        let (rows, _) = self.limits(options);
        if rows <= 1 {
            return false;
        }
        self.halvings.fetch_add(1, Ordering::Relaxed);
        self.through.store(0, Ordering::Relaxed);
        true
    }

    /// Counts a batch that went through; every few, the next batches grow
    /// back a step.
    pub(super) fn went_through(&self) {
        if self.halvings.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.through.fetch_add(1, Ordering::Relaxed) + 1 >= GROW_AFTER {
            self.through.store(0, Ordering::Relaxed);
            let _ = self
                .halvings
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

/// Whether `error` says a statement took longer than the runner's bound:
/// the server cancelled it (57014, `statement_timeout`) or ended the session
/// for idling in its transaction (25P03) while the runner worked on a
/// batch. (Finer than [`crate::failure::classify`], which calls both
/// retryable: only these two say that a smaller batch would help.)
pub(super) fn took_too_long(error: &Error) -> bool {
    let Error::Store(StoreError::Backend(source) | StoreError::Unavailable(source)) = error else {
        return false;
    };
    matches!(
        source.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("57014" | "25P03"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_halve_down_to_one_event_and_grow_back_after_batches_that_go_through() {
        let options = RunnerOptions::default()
            .batch_size(100)
            .batch_bytes(1 << 20);
        let pace = Pace::default();
        assert_eq!(pace.limits(&options), (100, 1 << 20));
        assert!(pace.slow_down(&options));
        assert_eq!(pace.limits(&options), (50, 1 << 19));
        while pace.slow_down(&options) {}
        assert_eq!(pace.limits(&options).0, 1, "one event at the least");
        let smallest = pace.halvings.load(Ordering::Relaxed);
        for _ in 0..GROW_AFTER - 1 {
            pace.went_through();
        }
        assert_eq!(pace.halvings.load(Ordering::Relaxed), smallest);
        pace.went_through();
        assert_eq!(pace.halvings.load(Ordering::Relaxed), smallest - 1);
        for _ in 0..GROW_AFTER * 64 {
            pace.went_through();
        }
        assert_eq!(
            pace.limits(&options),
            (100, 1 << 20),
            "back to the configured size"
        );
    }
}
