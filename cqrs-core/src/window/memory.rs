//! Windows kept in memory: the windowed read model of tests and demos,
//! with the same batches, lateness and queries as a database's.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::batch::{KeyState, StoredWindow, WindowBatch};
use super::{Window, WindowQueries, WindowSpec};
use crate::document::Document;
use crate::{BoxError, EventEnvelope, Projector, StoreError};

#[derive(Default)]
struct State {
    windows: BTreeMap<(String, DateTime<Utc>), StoredWindow>,
    keys: BTreeMap<String, KeyState>,
}

/// A windowed read model in memory: a projector of `D`'s events (run it
/// with an [`InMemoryRunner`](crate::InMemoryRunner)) that keeps `D` per key
/// and window, and answers [`WindowQueries`]. `D` is a `#[document]`: its
/// `#[apply]` methods add an event to a window's aggregate, its `#[id]`
/// methods name the key (the event's stream without one).
pub struct InMemoryWindows<D: Document> {
    name: String,
    spec: WindowSpec<D::Event>,
    state: Mutex<State>,
    _document: PhantomData<fn() -> D>,
}

impl<D: Document> InMemoryWindows<D> {
    /// An empty read model named [`D::NAME`](Document::NAME), windowed by
    /// `spec`.
    pub fn new(spec: WindowSpec<D::Event>) -> Self {
        Self::named(D::NAME.to_owned(), spec)
    }

    /// Version `version`, named `<NAME>_v<version>` (a new window size, say).
    pub fn version(spec: WindowSpec<D::Event>, version: u32) -> Self {
        Self::named(format!("{}_v{version}", D::NAME), spec)
    }

    fn named(name: String, spec: WindowSpec<D::Event>) -> Self {
        Self {
            name,
            spec,
            state: Mutex::new(State::default()),
            _document: PhantomData,
        }
    }

    /// The windows' specification.
    pub fn spec(&self) -> &WindowSpec<D::Event> {
        &self.spec
    }

    // Writes happen after every check passed: a poisoned lock still guards
    // a consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every key that has windows or a watermark.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys.keys().cloned().collect()
    }

    fn answer(
        &self,
        state: &State,
        found: impl Iterator<Item = StoredWindow>,
    ) -> Result<Vec<Window<D>>, StoreError> {
        found
            .map(|stored| {
                let watermark = state.keys.get(&stored.key).and_then(|key| key.watermark);
                Ok(stored.into_window(&self.name, &self.spec, watermark)?)
            })
            .collect()
    }

    fn of_key<'s>(
        state: &'s State,
        key: &str,
    ) -> impl DoubleEndedIterator<Item = &'s StoredWindow> + 's {
        state
            .windows
            .range(
                (key.to_owned(), DateTime::<Utc>::MIN_UTC)
                    ..=(key.to_owned(), DateTime::<Utc>::MAX_UTC),
            )
            .map(|(_, window)| window)
    }
}

#[async_trait]
impl<D: Document> Projector for InMemoryWindows<D> {
    type Event = D::Event;

    crate::__document_projector_basics!(D);

    async fn project(&self, event: &EventEnvelope<D::Event>, _: &mut ()) -> Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), &mut ())
            .await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<D::Event>],
        _: &mut (),
    ) -> Result<(), BoxError> {
        let batch = WindowBatch::<D>::new(events, &self.spec);
        let needs = batch.needs();
        // One lock for the whole batch: two batches applied at once (from
        // two tasks) would otherwise lose each other's changes.
        let mut state = self.lock();
        let keys: Vec<KeyState> = needs
            .keys
            .iter()
            .filter_map(|key| state.keys.get(key).cloned())
            .collect();
        let mut windows: Vec<StoredWindow> = needs
            .windows
            .iter()
            .filter_map(|id| state.windows.get(id).cloned())
            .collect();
        for (key, lo, hi) in &needs.sessions {
            windows.extend(
                Self::of_key(&state, key)
                    .filter(|window| window.start < *hi && window.end > *lo)
                    .cloned(),
            );
        }
        let writes = batch.apply(&self.name, keys, windows)?;
        super::log_late(&self.name, &writes.late);
        for id in writes.deleted {
            state.windows.remove(&id);
        }
        for window in writes.saved {
            state
                .windows
                .insert((window.key.clone(), window.start), window);
        }
        for key in writes.keys.into_iter().chain(writes.new_keys) {
            state.keys.insert(key.key.clone(), key);
        }
        Ok(())
    }

    async fn reset(&self, _: &mut ()) -> Result<(), BoxError> {
        *self.lock() = State::default();
        Ok(())
    }
}

#[async_trait]
impl<D: Document> WindowQueries<D> for InMemoryWindows<D> {
    async fn windows(
        &self,
        key: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Window<D>>, StoreError> {
        let state = self.lock();
        let found: Vec<StoredWindow> = Self::of_key(&state, key)
            .filter(|window| window.start >= from && window.start < to)
            .cloned()
            .collect();
        self.answer(&state, found.into_iter())
    }

    async fn at(&self, key: &str, time: DateTime<Utc>) -> Result<Vec<Window<D>>, StoreError> {
        let state = self.lock();
        let found: Vec<StoredWindow> = Self::of_key(&state, key)
            .filter(|window| window.start <= time && time < window.end)
            .cloned()
            .collect();
        self.answer(&state, found.into_iter())
    }

    async fn latest(&self, key: &str) -> Result<Option<Window<D>>, StoreError> {
        let state = self.lock();
        let found: Option<StoredWindow> = Self::of_key(&state, key).next_back().cloned();
        Ok(self.answer(&state, found.into_iter())?.pop())
    }

    async fn late_events(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.lock().keys.get(key).map_or(0, |state| state.late))
    }
}
