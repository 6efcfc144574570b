//! Sensors that report readings stamped with their own time: the domain of
//! the windowed read-model tests, with a log writer whose times jitter
//! (some readings late within the lateness, some beyond it) and a
//! recomputation of the windows straight from the log.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use cqrskit::window::{WindowQueries, WindowSpec};
use cqrskit::{
    DomainEvent, EventStore, ExpectedVersion, LogFilter, NewEvent, Position, StreamId, document,
};
use serde::{Deserialize, Serialize};

/// A sensor's reading, taken at `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// When the sensor took it (its event time).
    pub at: DateTime<Utc>,
    /// The value read.
    pub value: i64,
}

/// A sensor's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum SensorEvent {
    /// See [`Reading`].
    Reading(Reading),
}

/// A window's statistics of one sensor (keyed by the sensor's stream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorStats {
    /// Readings counted.
    pub count: u32,
    /// Their sum.
    pub sum: i64,
    /// The largest.
    pub max: i64,
}

impl SensorStats {
    fn add(&mut self, value: i64) {
        self.max = if self.count == 0 {
            value
        } else {
            self.max.max(value)
        };
        self.count += 1;
        self.sum += value;
    }
}

#[document(event = SensorEvent, name = "sensor_stats")]
impl SensorStats {
    #[apply]
    fn reading(&mut self, event: &Reading) {
        self.add(event.value);
    }

    #[merge]
    fn merge(&mut self, other: Self) {
        if other.count > 0 {
            self.max = if self.count == 0 {
                other.max
            } else {
                self.max.max(other.max)
            };
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// The sensors' readings' own time.
pub fn reading_time(event: &cqrskit::EventEnvelope<SensorEvent>) -> DateTime<Utc> {
    let SensorEvent::Reading(reading) = &event.payload;
    reading.at
}

/// 5-minute tumbling windows accepting readings 2 minutes late.
pub fn tumbling() -> WindowSpec<SensorEvent> {
    WindowSpec::tumbling(Duration::from_secs(300))
        .expect("valid")
        .allowed_lateness(Duration::from_secs(120))
        .event_time(reading_time)
}

/// 15-minute windows every 5 minutes, accepting readings 2 minutes late.
pub fn hopping() -> WindowSpec<SensorEvent> {
    WindowSpec::hopping(Duration::from_secs(900), Duration::from_secs(300))
        .expect("valid")
        .allowed_lateness(Duration::from_secs(120))
        .event_time(reading_time)
}

/// Sessions ending after 3 minutes of silence, accepting readings 5
/// minutes late.
pub fn sessions() -> WindowSpec<SensorEvent> {
    WindowSpec::session(Duration::from_secs(180))
        .expect("valid")
        .allowed_lateness(Duration::from_secs(300))
        .event_time(reading_time)
}

/// The first reading's time.
pub fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0)
        .single()
        .expect("a valid time")
}

/// The time and value of reading `n` of `sensor`: every 40 seconds on
/// average, jittered back by up to 90 seconds (late within the lateness),
/// a pause of 10 minutes every 12th reading (a new session), and every
/// 17th reading 15 minutes behind (late beyond it).
pub fn reading(sensor: usize, n: usize) -> Reading {
    let seed = (sensor * 7919 + n * 104_729) % 1000;
    let pauses = i64::try_from(n / 12).expect("small") * 600;
    let mut seconds = i64::try_from(n).expect("small") * 40 + pauses;
    seconds -= i64::try_from(seed % 90).expect("small");
    if n % 17 == 16 {
        seconds -= 900;
    }
    Reading {
        at: origin() + TimeDelta::seconds(seconds),
        value: i64::try_from(seed).expect("small") - 500,
    }
}

/// Appends readings `from..to` of `sensors` sensors, one reading per append
/// going round the sensors (so a batch of the log mixes them), and returns
/// how many it wrote.
///
/// # Panics
///
/// When an append fails.
pub async fn write_readings(
    store: &dyn EventStore,
    sensors: usize,
    from: usize,
    to: usize,
) -> usize {
    for n in from..to {
        for sensor in 0..sensors {
            let event = NewEvent::from_event(
                &SensorEvent::Reading(reading(sensor, n)),
                cqrskit::Metadata::default(),
            )
            .expect("encodes");
            let expected = if n == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(n as u64)
            };
            store
                .append(
                    &StreamId::new("sensor", format!("s{sensor}")),
                    expected,
                    vec![event],
                )
                .await
                .expect("append");
        }
    }
    sensors * (to - from)
}

/// Every reading of the log, in log order: `(sensor, time, value)`.
///
/// # Panics
///
/// When the log cannot be read.
pub async fn log_readings(store: &dyn EventStore) -> Vec<(String, DateTime<Utc>, i64)> {
    let filter = LogFilter::event_types(["Reading"]);
    let mut after = Position::START;
    let mut readings = Vec::new();
    loop {
        let batch = store.read_log(after, &filter, 1000).await.expect("read");
        let Some(last) = batch.last() else {
            return readings;
        };
        after = last.position;
        for stored in batch {
            let event = stored.decode::<SensorEvent>().expect("decodes");
            let SensorEvent::Reading(reading) = event.payload;
            readings.push((event.stream.aggregate_id, reading.at, reading.value));
        }
    }
}

/// A window as the recomputation answers it: its end, statistics and
/// whether it is closed.
pub type Recomputed = BTreeMap<(String, DateTime<Utc>), (DateTime<Utc>, SensorStats, bool)>;

/// The windows `spec` should hold after `readings` (in log order), worked
/// out here without the framework's engine: each sensor's watermark is the
/// latest time it reported; a window closes when the watermark passes its
/// end by the lateness; a reading for closed windows only is late. Returns
/// the windows and each sensor's late count.
pub fn recompute(
    spec: &WindowSpec<SensorEvent>,
    readings: &[(String, DateTime<Utc>, i64)],
) -> (Recomputed, BTreeMap<String, u64>) {
    use cqrskit::window::WindowKind;
    let lateness = TimeDelta::from_std(spec.lateness()).expect("fits");
    let closed = |end: DateTime<Utc>, watermark: Option<DateTime<Utc>>| {
        watermark.is_some_and(|watermark| watermark >= end + lateness)
    };
    let mut windows: Recomputed = BTreeMap::new();
    let mut watermarks: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut late: BTreeMap<String, u64> = BTreeMap::new();
    for (sensor, at, value) in readings {
        let watermark = watermarks.get(sensor).copied();
        let mut on_time = false;
        match spec.kind() {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                let hop = match spec.kind() {
                    WindowKind::Hopping { hop, .. } => hop,
                    _ => size,
                };
                let (size, hop) = (
                    TimeDelta::from_std(size).expect("fits"),
                    TimeDelta::from_std(hop).expect("fits"),
                );
                // Every start on the hop grid with start <= at < start + size.
                let micros = at.timestamp_micros();
                let hop_us = hop.num_microseconds().expect("fits");
                let mut start = DateTime::from_timestamp_micros(micros - micros.rem_euclid(hop_us))
                    .expect("in range");
                while start + size > *at {
                    let end = start + size;
                    if !closed(end, watermark) {
                        on_time = true;
                        windows
                            .entry((sensor.clone(), start))
                            .or_insert((end, SensorStats::default(), false))
                            .1
                            .add(*value);
                    }
                    start -= hop;
                }
            }
            WindowKind::Session { gap } => {
                let gap = TimeDelta::from_std(gap).expect("fits");
                let own_end = *at + gap;
                let touching: Vec<DateTime<Utc>> = windows
                    .iter()
                    .filter(|((key, start), (end, _, _))| {
                        key == sensor && *start < own_end && *end > *at
                    })
                    .map(|((_, start), _)| *start)
                    .collect();
                let any_closed = touching
                    .iter()
                    .any(|start| closed(windows[&(sensor.clone(), *start)].0, watermark));
                if !closed(own_end, watermark) && !any_closed {
                    on_time = true;
                    let mut start = *at;
                    let mut end = own_end;
                    let mut stats = SensorStats::default();
                    for old in touching {
                        let (old_end, old_stats, _) =
                            windows.remove(&(sensor.clone(), old)).expect("touching");
                        start = start.min(old);
                        end = end.max(old_end);
                        stats.merge(old_stats);
                    }
                    stats.add(*value);
                    windows.insert((sensor.clone(), start), (end, stats, false));
                }
            }
        }
        if !on_time {
            *late.entry(sensor.clone()).or_default() += 1;
        }
        if watermark.is_none_or(|watermark| *at > watermark) {
            watermarks.insert(sensor.clone(), *at);
        }
    }
    for ((sensor, _), (end, _, is_closed)) in &mut windows {
        *is_closed = closed(*end, watermarks.get(sensor).copied());
    }
    (windows, late)
}

/// Every window of sensors `s0..s{sensors}` as `windows` answers, in the
/// recomputation's shape, and each sensor's late count; checks on the way
/// that each window's revision counts its readings.
///
/// # Panics
///
/// When a query fails or a revision is off.
pub async fn answers(
    windows: &dyn WindowQueries<SensorStats>,
    sensors: usize,
) -> (Recomputed, BTreeMap<String, u64>) {
    let (from, to) = (origin() - TimeDelta::days(1), origin() + TimeDelta::days(2));
    let mut found = Recomputed::new();
    let mut late = BTreeMap::new();
    for sensor in 0..sensors {
        let key = format!("s{sensor}");
        for window in windows.windows(&key, from, to).await.expect("windows") {
            assert_eq!(
                window.revision,
                u64::from(window.value.count),
                "one revision per reading applied"
            );
            found.insert(
                (window.key, window.start),
                (window.end, window.value, window.closed),
            );
        }
        let count = windows.late_events(&key).await.expect("late");
        if count > 0 {
            late.insert(key, count);
        }
    }
    (found, late)
}
