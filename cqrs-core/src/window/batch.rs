//! One batch of events applied to the windows they fall in, in memory:
//! what every store's windowed projector does between loading the windows
//! and writing them back.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Window;
use super::assign::fixed_windows;
use super::spec::{WindowKind, WindowSpec, delta};
use crate::document::{Change, Document, DocumentError, StoredDocument};
use crate::{BoxError, EventEnvelope};

/// A window as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWindow {
    /// The key it aggregates (a customer, a product).
    pub key: String,
    /// Its first instant.
    pub start: DateTime<Utc>,
    /// The instant after its last: it holds `start <= time < end`.
    pub end: DateTime<Utc>,
    /// How many events changed it.
    pub revision: u64,
    /// Its aggregate's JSON text.
    pub body: String,
}

impl StoredWindow {
    /// The window's id in errors: `<key>@<start>`.
    fn id(&self) -> String {
        format!("{}@{}", self.key, self.start.to_rfc3339())
    }

    fn decode<D: Document>(&self, read_model: &str) -> Result<D, DocumentError> {
        StoredDocument {
            id: self.id(),
            revision: self.revision,
            body: self.body.clone(),
        }
        .decode::<D>(read_model)
        .map(|versioned| versioned.document)
    }

    /// The window as a query answers it, its key's watermark being
    /// `watermark` under `spec`.
    ///
    /// # Errors
    ///
    /// [`DocumentError::Decode`] when its body does not read as `D`.
    pub fn into_window<D: Document>(
        self,
        read_model: &str,
        spec: &WindowSpec<D::Event>,
        watermark: Option<DateTime<Utc>>,
    ) -> Result<Window<D>, DocumentError> {
        let value = self.decode::<D>(read_model)?;
        Ok(Window {
            closed: spec.closed(self.end, watermark),
            key: self.key,
            start: self.start,
            end: self.end,
            revision: self.revision,
            value,
        })
    }
}

/// What a store keeps per key: the latest event time seen (the watermark),
/// and how many events came too late.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    /// The key.
    pub key: String,
    /// The latest event time of the key's events so far.
    pub watermark: Option<DateTime<Utc>>,
    /// How many of its events fell only in closed windows.
    pub late: u64,
}

/// An event that fell only in closed windows: nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateEvent {
    /// The key it was for.
    pub key: String,
    /// The event.
    pub event_id: Uuid,
    /// Its time.
    pub time: DateTime<Utc>,
    /// The key's watermark when it came.
    pub watermark: DateTime<Utc>,
}

/// What a batch needs loaded before [`WindowBatch::apply`].
#[derive(Debug, Default)]
pub struct WindowNeeds {
    /// The keys whose state to load.
    pub keys: Vec<String>,
    /// Fixed windows to load, by key and start.
    pub windows: Vec<(String, DateTime<Utc>)>,
    /// Session windows to load: those of the key that overlap `[lo, hi)`.
    pub sessions: Vec<(String, DateTime<Utc>, DateTime<Utc>)>,
}

/// What a batch leaves to write.
#[derive(Debug, Default)]
pub struct WindowWrites {
    /// Windows changed or created (their final state).
    pub saved: Vec<StoredWindow>,
    /// Windows to remove, by key and start: sessions merged into another
    /// or moved to an earlier start, windows a `#[delete]` cleared.
    pub deleted: Vec<(String, DateTime<Utc>)>,
    /// Keys that existed before the batch, whose watermark or late count
    /// changed.
    pub keys: Vec<KeyState>,
    /// Keys seen for the first time. A store that lets two writers change
    /// one read model at once must find one created meanwhile by another
    /// writer and fail the batch rather than overwrite its windows.
    pub new_keys: Vec<KeyState>,
    /// The batch's late events, for the log.
    pub late: Vec<LateEvent>,
}

/// The events of one batch, with the key each is for and its time.
pub struct WindowBatch<'a, D: Document> {
    events: &'a [EventEnvelope<D::Event>],
    spec: &'a WindowSpec<D::Event>,
    /// `(event index, key, time)`, in log order.
    touches: Vec<(usize, String, DateTime<Utc>)>,
}

/// A window while the batch changes it.
struct Slot<D> {
    /// Its start as stored, if it was loaded (a moved or merged session
    /// removes that row).
    stored_start: Option<DateTime<Utc>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    revision: u64,
    value: Option<D>,
    changed: bool,
}

impl<D> Slot<D> {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            stored_start: None,
            start,
            end,
            revision: 0,
            value: None,
            changed: false,
        }
    }

    /// Applies an event's `change`, computed on `value`; `existed` says
    /// whether the window held a state before the event.
    fn settle(&mut self, value: D, change: Change, existed: bool) {
        match change {
            Change::Updated => {
                self.revision = if existed { self.revision + 1 } else { 1 };
                self.value = Some(value);
                self.changed = true;
            }
            Change::Deleted => {
                self.value = None;
                self.revision = 0;
                self.changed = true;
            }
            Change::Unchanged => self.value = existed.then_some(value),
        }
    }
}

type Windows<D> = BTreeMap<(String, DateTime<Utc>), Slot<D>>;

impl<'a, D: Document> WindowBatch<'a, D> {
    /// The batch of `events`, in log order, under `spec`.
    pub fn new(events: &'a [EventEnvelope<D::Event>], spec: &'a WindowSpec<D::Event>) -> Self {
        let mut touches = Vec::new();
        let mut keys = Vec::new();
        for (index, event) in events.iter().enumerate() {
            D::ids(event, &mut keys);
            let time = spec.time_of(event);
            touches.extend(keys.drain(..).map(|key| (index, key, time)));
        }
        Self {
            events,
            spec,
            touches,
        }
    }

    /// The keys and windows to load.
    pub fn needs(&self) -> WindowNeeds {
        let mut needs = WindowNeeds::default();
        let mut spans: BTreeMap<&str, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
        let mut fixed = std::collections::BTreeSet::new();
        for (_, key, time) in &self.touches {
            match self.spec.kind() {
                WindowKind::Tumbling { size } => {
                    for (start, _) in fixed_windows(*time, delta(size), delta(size)) {
                        fixed.insert((key.clone(), start));
                    }
                }
                WindowKind::Hopping { size, hop } => {
                    for (start, _) in fixed_windows(*time, delta(size), delta(hop)) {
                        fixed.insert((key.clone(), start));
                    }
                }
                WindowKind::Session { gap } => {
                    let end = time.checked_add_signed(delta(gap)).unwrap_or(*time);
                    let span = spans.entry(key.as_str()).or_insert((*time, end));
                    span.0 = span.0.min(*time);
                    span.1 = span.1.max(end);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        needs.keys = self
            .touches
            .iter()
            .filter(|(_, key, _)| seen.insert(key.as_str()))
            .map(|(_, key, _)| key.clone())
            .collect();
        needs.windows = fixed.into_iter().collect();
        needs.sessions = spans
            .into_iter()
            .map(|(key, (lo, hi))| (key.to_owned(), lo, hi))
            .collect();
        needs
    }

    /// Applies the events to their windows: `keys` and `windows` are those
    /// of [`needs`](Self::needs) that exist. Returns what to write.
    ///
    /// # Errors
    ///
    /// [`DocumentError::Decode`] for a stored window that does not read as
    /// `D`, [`DocumentError::Apply`] for a method (or a merge) that failed,
    /// [`DocumentError::Encode`] for a result that cannot be stored.
    /// Nothing is to be written then.
    pub fn apply(
        &self,
        read_model: &str,
        keys: impl IntoIterator<Item = KeyState>,
        windows: impl IntoIterator<Item = StoredWindow>,
    ) -> Result<WindowWrites, DocumentError> {
        let mut states: HashMap<String, (KeyState, bool)> = keys
            .into_iter()
            .map(|state| (state.key.clone(), (state, false)))
            .collect();
        let existing: std::collections::HashSet<String> = states.keys().cloned().collect();
        let mut slots: Windows<D> = BTreeMap::new();
        for stored in windows {
            let value = stored.decode::<D>(read_model)?;
            slots.insert(
                (stored.key.clone(), stored.start),
                Slot {
                    stored_start: Some(stored.start),
                    start: stored.start,
                    end: stored.end,
                    revision: stored.revision,
                    value: Some(value),
                    changed: false,
                },
            );
        }
        let mut removed: Vec<(String, DateTime<Utc>)> = Vec::new();
        let mut late = Vec::new();
        for (index, key, time) in &self.touches {
            let event = &self.events[*index];
            if !states.contains_key(key) {
                crate::document::check_id(read_model, key)?;
            }
            let (state, touched) = states.entry(key.clone()).or_insert_with(|| {
                (
                    KeyState {
                        key: key.clone(),
                        watermark: None,
                        late: 0,
                    },
                    false,
                )
            });
            let on_time = match self.spec.kind() {
                WindowKind::Tumbling { size } => self.fixed(
                    read_model,
                    &mut slots,
                    key,
                    *time,
                    event,
                    size,
                    size,
                    state.watermark,
                )?,
                WindowKind::Hopping { size, hop } => self.fixed(
                    read_model,
                    &mut slots,
                    key,
                    *time,
                    event,
                    size,
                    hop,
                    state.watermark,
                )?,
                WindowKind::Session { gap } => self.session(
                    read_model,
                    &mut slots,
                    &mut removed,
                    key,
                    *time,
                    event,
                    gap,
                    state.watermark,
                )?,
            };
            if !on_time {
                state.late += 1;
                late.push(LateEvent {
                    key: key.clone(),
                    event_id: event.event_id,
                    time: *time,
                    watermark: state.watermark.unwrap_or(*time),
                });
            }
            if state.watermark.is_none_or(|watermark| *time > watermark) {
                state.watermark = Some(*time);
            }
            *touched = true;
        }
        let mut writes = WindowWrites {
            deleted: removed,
            late,
            ..WindowWrites::default()
        };
        for ((key, _), slot) in slots {
            if let Some(stored) = slot.stored_start {
                if (slot.value.is_none() && slot.changed) || stored != slot.start {
                    writes.deleted.push((key.clone(), stored));
                }
            }
            if !slot.changed {
                continue;
            }
            if let Some(value) = &slot.value {
                let id = format!("{key}@{}", slot.start.to_rfc3339());
                writes.saved.push(StoredWindow {
                    body: crate::document::batch_encode(read_model, &id, value)?,
                    key,
                    start: slot.start,
                    end: slot.end,
                    revision: slot.revision,
                });
            }
        }
        let (mut old, mut new): (Vec<KeyState>, Vec<KeyState>) = states
            .into_values()
            .filter(|(_, touched)| *touched)
            .map(|(state, _)| state)
            .partition(|state| existing.contains(&state.key));
        old.sort_by(|a, b| a.key.cmp(&b.key));
        new.sort_by(|a, b| a.key.cmp(&b.key));
        writes.keys = old;
        writes.new_keys = new;
        Ok(writes)
    }

    /// Applies `event` to the open fixed windows of `time`; `false` when
    /// every one was closed (a late event).
    #[allow(clippy::too_many_arguments)]
    fn fixed(
        &self,
        read_model: &str,
        slots: &mut Windows<D>,
        key: &str,
        time: DateTime<Utc>,
        event: &EventEnvelope<D::Event>,
        size: std::time::Duration,
        hop: std::time::Duration,
        watermark: Option<DateTime<Utc>>,
    ) -> Result<bool, DocumentError> {
        let mut on_time = false;
        for (start, end) in fixed_windows(time, delta(size), delta(hop)) {
            if self.spec.closed(end, watermark) {
                continue;
            }
            on_time = true;
            let slot = slots
                .entry((key.to_owned(), start))
                .or_insert_with(|| Slot::new(start, end));
            let existed = slot.value.is_some();
            let mut value = slot.value.take().unwrap_or_default();
            let change = value
                .apply(key, event)
                .map_err(|source| apply_error(read_model, key, start, source))?;
            slot.settle(value, change, existed);
        }
        Ok(on_time)
    }

    /// Applies `event` to the session of `key` it falls in, creating or
    /// joining sessions; `false` when it is late.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &self,
        read_model: &str,
        slots: &mut Windows<D>,
        removed: &mut Vec<(String, DateTime<Utc>)>,
        key: &str,
        time: DateTime<Utc>,
        event: &EventEnvelope<D::Event>,
        gap: std::time::Duration,
        watermark: Option<DateTime<Utc>>,
    ) -> Result<bool, DocumentError> {
        let own_end = time.checked_add_signed(delta(gap)).unwrap_or(time);
        if self.spec.closed(own_end, watermark) {
            return Ok(false);
        }
        let overlapping: Vec<DateTime<Utc>> = slots
            .range((key.to_owned(), DateTime::<Utc>::MIN_UTC)..)
            .take_while(|((k, _), _)| k == key)
            .filter(|(_, slot)| slot.value.is_some() && slot.start < own_end && slot.end > time)
            .map(|((_, start), _)| *start)
            .collect();
        if overlapping.iter().any(|start| {
            self.spec
                .closed(slots[&(key.to_owned(), *start)].end, watermark)
        }) {
            return Ok(false);
        }
        // The sessions the event joins, taken out; the state it applies to
        // is theirs merged (on copies when there are several, so that an
        // event that changes nothing leaves them as they were).
        let mut joined: Vec<Slot<D>> = overlapping
            .iter()
            .map(|start| {
                slots
                    .remove(&(key.to_owned(), *start))
                    .expect("an overlapping session is in the map")
            })
            .collect();
        let mut value = match joined.as_mut_slice() {
            [] => D::default(),
            [only] => only.value.take().expect("a joined session has a state"),
            [first, rest @ ..] => {
                let mut merged = copy(read_model, key, first)?;
                for other in rest.iter() {
                    merged
                        .merge(copy(read_model, key, other)?)
                        .map_err(|source| apply_error(read_model, key, first.start, source))?;
                }
                merged
            }
        };
        let first_start = joined.first().map_or(time, |slot| slot.start);
        let change = value
            .apply(key, event)
            .map_err(|source| apply_error(read_model, key, first_start, source))?;
        match change {
            Change::Unchanged => {
                // Nothing joins, nothing grows, nothing is created.
                if let [only] = joined.as_mut_slice() {
                    only.value = Some(value);
                }
                for slot in joined {
                    place(slots, removed, key, slot);
                }
            }
            Change::Updated => {
                let mut session = Slot::new(time, own_end);
                session.changed = true;
                session.revision = 1;
                for (index, slot) in joined.into_iter().enumerate() {
                    session.start = session.start.min(slot.start);
                    session.end = session.end.max(slot.end);
                    session.revision += slot.revision;
                    match (index, slot.stored_start) {
                        // The first session's row is the merged one's, moved
                        // if its start moves.
                        (0, stored) => session.stored_start = stored,
                        (_, Some(stored)) => removed.push((key.to_owned(), stored)),
                        (_, None) => {}
                    }
                }
                session.value = Some(value);
                place(slots, removed, key, session);
            }
            Change::Deleted => {
                // Every joined session ends; the first keeps its place so
                // that its row is removed.
                for (index, mut slot) in joined.into_iter().enumerate() {
                    if index == 0 {
                        slot.value = None;
                        slot.revision = 0;
                        slot.changed = true;
                        place(slots, removed, key, slot);
                    } else if let Some(stored) = slot.stored_start {
                        removed.push((key.to_owned(), stored));
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Puts `slot` in the map under its start; a slot it displaces there (a
/// session removed earlier in the batch) has its row removed.
fn place<D>(
    slots: &mut Windows<D>,
    removed: &mut Vec<(String, DateTime<Utc>)>,
    key: &str,
    slot: Slot<D>,
) {
    if let Some(displaced) = slots.insert((key.to_owned(), slot.start), slot) {
        if let Some(stored) = displaced.stored_start {
            removed.push((key.to_owned(), stored));
        }
    }
}

/// A copy of a joined session's state, through its JSON (documents need
/// not be `Clone`): merging works on copies until the event decides.
fn copy<D: Document>(read_model: &str, key: &str, slot: &Slot<D>) -> Result<D, DocumentError> {
    let value = slot.value.as_ref().expect("a joined session has a state");
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|error| apply_error(read_model, key, slot.start, error.into()))
}

fn apply_error(
    read_model: &str,
    key: &str,
    start: DateTime<Utc>,
    source: BoxError,
) -> DocumentError {
    DocumentError::Apply {
        read_model: read_model.to_owned(),
        id: format!("{key}@{}", start.to_rfc3339()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, TimeZone, Utc};
    use serde::{Deserialize, Serialize};

    use super::{KeyState, StoredWindow, WindowBatch, WindowWrites};
    use crate::document::{Change, Document, Identity};
    use crate::window::WindowSpec;
    use crate::{BoxError, DomainEvent, EventEnvelope, Metadata, Position, StreamId};

    /// A reading at a time of its own, for the key `key`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Reading {
        key: String,
        at: DateTime<Utc>,
        value: i64,
    }

    impl DomainEvent for Reading {
        const EVENT_TYPES: &'static [&'static str] = &["Reading"];

        fn event_type(&self) -> &'static str {
            "Reading"
        }
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Stats {
        count: u32,
        sum: i64,
    }

    impl Document for Stats {
        type Event = Reading;
        const NAME: &'static str = "stats";
        const EVENT_TYPES: &'static [&'static str] = &["Reading"];
        const IDENTITY: Identity = Identity::Event;

        fn ids(event: &EventEnvelope<Reading>, ids: &mut Vec<String>) {
            ids.push(event.payload.key.clone());
        }

        fn apply(&mut self, _: &str, event: &EventEnvelope<Reading>) -> Result<Change, BoxError> {
            self.count += 1;
            self.sum += event.payload.value;
            Ok(Change::Updated)
        }

        fn merge(&mut self, other: Self) -> Result<(), BoxError> {
            self.count += other.count;
            self.sum += other.sum;
            Ok(())
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0)
            .single()
            .expect("a valid time")
    }

    fn reading(n: u64, key: &str, time: DateTime<Utc>, value: i64) -> EventEnvelope<Reading> {
        EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new("sensor", key),
            version: n,
            position: Position::new(1, n),
            event_type: "Reading".into(),
            event_version: 1,
            payload: Reading {
                key: key.into(),
                at: time,
                value,
            },
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
        }
    }

    fn minutes(m: u64) -> Duration {
        Duration::from_secs(60 * m)
    }

    /// Runs `events` one batch at a time through an in-memory map, as a
    /// store would, and returns the windows and key states.
    fn run(
        spec: &WindowSpec<Reading>,
        batches: &[&[EventEnvelope<Reading>]],
    ) -> (Vec<StoredWindow>, Vec<KeyState>) {
        run_as::<Stats>(spec, batches)
    }

    fn run_as<D: Document<Event = Reading>>(
        spec: &WindowSpec<Reading>,
        batches: &[&[EventEnvelope<Reading>]],
    ) -> (Vec<StoredWindow>, Vec<KeyState>) {
        let mut windows: std::collections::BTreeMap<(String, DateTime<Utc>), StoredWindow> =
            Default::default();
        let mut keys: std::collections::BTreeMap<String, KeyState> = Default::default();
        for events in batches {
            let batch = WindowBatch::<D>::new(events, spec);
            let needs = batch.needs();
            let loaded_keys: Vec<KeyState> = needs
                .keys
                .iter()
                .filter_map(|key| keys.get(key).cloned())
                .collect();
            let mut loaded: Vec<StoredWindow> = needs
                .windows
                .iter()
                .filter_map(|id| windows.get(id).cloned())
                .collect();
            for (key, lo, hi) in &needs.sessions {
                loaded.extend(
                    windows
                        .values()
                        .filter(|w| &w.key == key && w.start < *hi && w.end > *lo)
                        .cloned(),
                );
            }
            let WindowWrites {
                saved,
                deleted,
                keys: changed,
                new_keys,
                ..
            } = batch.apply("stats", loaded_keys, loaded).expect("applies");
            for id in deleted {
                windows.remove(&id);
            }
            for window in saved {
                windows.insert((window.key.clone(), window.start), window);
            }
            for state in changed.into_iter().chain(new_keys) {
                keys.insert(state.key.clone(), state);
            }
        }
        (
            windows.into_values().collect(),
            keys.into_values().collect(),
        )
    }

    fn summary(windows: &[StoredWindow]) -> Vec<(String, DateTime<Utc>, DateTime<Utc>, String)> {
        windows
            .iter()
            .map(|w| (w.key.clone(), w.start, w.end, w.body.clone()))
            .collect()
    }

    fn stats(count: u32, sum: i64) -> String {
        format!("{{\"count\":{count},\"sum\":{sum}}}")
    }

    #[test]
    fn tumbling_windows_take_late_events_within_the_lateness_and_count_the_rest() {
        let spec = WindowSpec::<Reading>::tumbling(minutes(5))
            .expect("a valid window")
            .allowed_lateness(minutes(5))
            .event_time(|event| event.payload.at);
        let events = [
            reading(1, "a", at(10, 1), 1),
            reading(2, "a", at(10, 7), 2),
            // Late, but [10:00, 10:05) is open until the watermark reaches 10:10.
            reading(3, "a", at(10, 3), 4),
            reading(4, "b", at(9, 0), 100),
            reading(5, "a", at(10, 16), 8),
            // [10:00, 10:05) closed at 10:10: too late.
            reading(6, "a", at(10, 2), 16),
        ];
        // The same answer in one batch and in batches of one.
        let whole = run(&spec, &[&events]);
        let singles: Vec<&[EventEnvelope<Reading>]> =
            events.iter().map(std::slice::from_ref).collect();
        assert_eq!(run(&spec, &singles), whole);
        let (windows, keys) = whole;
        assert_eq!(
            summary(&windows),
            [
                ("a".into(), at(10, 0), at(10, 5), stats(2, 5)),
                ("a".into(), at(10, 5), at(10, 10), stats(1, 2)),
                ("a".into(), at(10, 15), at(10, 20), stats(1, 8)),
                ("b".into(), at(9, 0), at(9, 5), stats(1, 100)),
            ]
        );
        assert_eq!(windows[0].revision, 2);
        assert_eq!(
            keys,
            [
                KeyState {
                    key: "a".into(),
                    watermark: Some(at(10, 16)),
                    late: 1
                },
                KeyState {
                    key: "b".into(),
                    watermark: Some(at(9, 0)),
                    late: 0
                },
            ],
            "a key's watermark is its own: b's old reading is not late"
        );
    }

    #[test]
    fn hopping_windows_count_each_event_in_every_window_that_holds_it() {
        let spec = WindowSpec::<Reading>::hopping(minutes(15), minutes(5))
            .expect("a valid window")
            .event_time(|event| event.payload.at);
        let events = [
            reading(1, "a", at(10, 7), 1),
            reading(2, "a", at(10, 12), 2),
        ];
        let (windows, _) = run(&spec, &[&events]);
        assert_eq!(
            summary(&windows),
            [
                ("a".into(), at(9, 55), at(10, 10), stats(1, 1)),
                ("a".into(), at(10, 0), at(10, 15), stats(2, 3)),
                ("a".into(), at(10, 5), at(10, 20), stats(2, 3)),
                ("a".into(), at(10, 10), at(10, 25), stats(1, 2)),
            ]
        );
    }

    #[test]
    fn an_event_between_two_sessions_joins_them_and_the_merged_one_moves() {
        let spec = WindowSpec::<Reading>::session(minutes(10))
            .expect("a valid window")
            .allowed_lateness(minutes(30))
            .event_time(|event| event.payload.at);
        let first = [
            reading(1, "a", at(10, 0), 1),
            reading(2, "a", at(10, 5), 2),
            reading(3, "a", at(10, 22), 4),
        ];
        let (windows, _) = run(&spec, &[&first]);
        assert_eq!(
            summary(&windows),
            [
                ("a".into(), at(10, 0), at(10, 15), stats(2, 3)),
                ("a".into(), at(10, 22), at(10, 32), stats(1, 4)),
            ]
        );
        // 10:13 is within 10 minutes of 10:05 and of 10:22: one session.
        let bridge = [reading(4, "a", at(10, 13), 8)];
        // An earlier event extends the session backwards: its key moves.
        let earlier = [reading(5, "a", at(9, 55), 16)];
        let (windows, keys) = run(&spec, &[&first, &bridge, &earlier]);
        assert_eq!(
            summary(&windows),
            [("a".into(), at(9, 55), at(10, 32), stats(5, 31))]
        );
        assert_eq!(windows[0].revision, 5);
        assert_eq!(keys[0].late, 0);
        // Past the lateness, an event for a closed session is counted only.
        let much_later = [
            reading(6, "a", at(12, 0), 32),
            reading(7, "a", at(10, 30), 64),
        ];
        let (windows, keys) = run(&spec, &[&first, &bridge, &earlier, &much_later]);
        assert_eq!(windows.len(), 2);
        assert_eq!(summary(&windows)[0].3, stats(5, 31));
        assert_eq!(keys[0].late, 1);
    }

    /// Counts positive readings; a negative one does not concern it, a
    /// zero ends the window.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Positives {
        count: u32,
        sum: i64,
    }

    impl Document for Positives {
        type Event = Reading;
        const NAME: &'static str = "positives";
        const EVENT_TYPES: &'static [&'static str] = &["Reading"];
        const IDENTITY: Identity = Identity::Event;

        fn ids(event: &EventEnvelope<Reading>, ids: &mut Vec<String>) {
            ids.push(event.payload.key.clone());
        }

        fn apply(&mut self, _: &str, event: &EventEnvelope<Reading>) -> Result<Change, BoxError> {
            Ok(match event.payload.value {
                value if value < 0 => Change::Unchanged,
                0 => Change::Deleted,
                value => {
                    self.count += 1;
                    self.sum += value;
                    Change::Updated
                }
            })
        }

        fn merge(&mut self, other: Self) -> Result<(), BoxError> {
            self.count += other.count;
            self.sum += other.sum;
            Ok(())
        }
    }

    /// The same windows whatever the batches: all at once, one by one, in
    /// pairs.
    fn same_in_any_batches(
        spec: &WindowSpec<Reading>,
        events: &[EventEnvelope<Reading>],
    ) -> Vec<StoredWindow> {
        let whole = run_as::<Positives>(spec, &[events]);
        let singles: Vec<&[EventEnvelope<Reading>]> =
            events.iter().map(std::slice::from_ref).collect();
        assert_eq!(run_as::<Positives>(spec, &singles), whole, "one by one");
        let pairs: Vec<&[EventEnvelope<Reading>]> = events.chunks(2).collect();
        assert_eq!(run_as::<Positives>(spec, &pairs), whole, "in pairs");
        whole.0
    }

    #[test]
    fn events_that_change_nothing_neither_grow_nor_join_sessions_in_any_batches() {
        let spec = WindowSpec::<Reading>::session(minutes(10))
            .expect("a valid window")
            .allowed_lateness(minutes(60))
            .event_time(|event| event.payload.at);
        // An earlier reading that changes nothing leaves the session where it is.
        let windows = same_in_any_batches(
            &spec,
            &[
                reading(1, "a", at(10, 0), 1),
                reading(2, "a", at(9, 55), -1),
            ],
        );
        assert_eq!(
            summary(&windows),
            [("a".into(), at(10, 0), at(10, 10), stats(1, 1))]
        );
        // Nor does a later one carry the session on to the next reading.
        let windows = same_in_any_batches(
            &spec,
            &[
                reading(1, "a", at(10, 0), 1),
                reading(2, "a", at(10, 8), -1),
                reading(3, "a", at(10, 15), 5),
            ],
        );
        assert_eq!(
            summary(&windows),
            [
                ("a".into(), at(10, 0), at(10, 10), stats(1, 1)),
                ("a".into(), at(10, 15), at(10, 25), stats(1, 5)),
            ]
        );
        // Nor join two sessions.
        let windows = same_in_any_batches(
            &spec,
            &[
                reading(1, "a", at(10, 0), 1),
                reading(2, "a", at(10, 15), 2),
                reading(3, "a", at(10, 8), -1),
            ],
        );
        assert_eq!(windows.len(), 2);
    }

    #[test]
    fn a_session_ended_and_begun_again_at_one_instant_leaves_one_row_in_any_batches() {
        let spec = WindowSpec::<Reading>::session(minutes(10))
            .expect("a valid window")
            .allowed_lateness(minutes(60))
            .event_time(|event| event.payload.at);
        let windows = same_in_any_batches(
            &spec,
            &[
                reading(1, "a", at(10, 0), 1),
                reading(2, "a", at(9, 58), 0),
                reading(3, "a", at(9, 58), 7),
                reading(4, "a", at(10, 30), 2),
                reading(5, "a", at(10, 25), 3),
                reading(6, "a", at(10, 20), 0),
            ],
        );
        assert_eq!(
            summary(&windows),
            [("a".into(), at(9, 58), at(10, 8), stats(1, 7))]
        );
    }
}
