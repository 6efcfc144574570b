//! What a windowed read model's windows are: their kind and size, the
//! lateness they accept, and where an event's time comes from.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::EventEnvelope;

/// The most windows one event may fall in (a hopping window's size over
/// its hop): each is a document loaded and written per event.
pub const MAX_WINDOWS_PER_EVENT: u64 = 1000;

/// The kinds of window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Back-to-back windows of `size`, aligned on the Unix epoch (UTC):
    /// each event falls in exactly one.
    Tumbling {
        /// Each window's length.
        size: Duration,
    },
    /// Windows of `size` starting every `hop` (a sliding window sampled
    /// every `hop`), aligned on the epoch: each event falls in `size / hop`
    /// of them.
    Hopping {
        /// Each window's length.
        size: Duration,
        /// The time between two windows' starts; divides `size`.
        hop: Duration,
    },
    /// Runs of activity per key: a window holds events less than `gap`
    /// apart, from its first event to its last plus `gap`. An event that
    /// falls between two sessions joins them (the document's `#[merge]`).
    Session {
        /// The silence that ends a session.
        gap: Duration,
    },
}

/// A window specification that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid window: {0}")]
pub struct InvalidWindow(String);

/// The windows of a windowed read model (`PgWindows`, [`InMemoryWindows`](super::InMemoryWindows)):
/// their kind, the lateness they accept, and each event's time.
///
/// Time is **event time**: by default the time the store recorded the event
/// (the database's clock), or a time the event carries
/// ([`event_time`](Self::event_time)). Each key keeps a *watermark*, the
/// latest event time it has seen. A window is *closed* once its key's
/// watermark has passed its end by the allowed lateness: it never changes
/// again. An event that falls only in closed windows is *late*: it changes
/// nothing, and is counted per key (`late_events`) and logged. Because the
/// watermark is per key, which events are late depends on the key's own
/// events in log order only, not on other keys or on how the log is
/// partitioned.
pub struct WindowSpec<E> {
    kind: WindowKind,
    lateness: Duration,
    time: fn(&EventEnvelope<E>) -> DateTime<Utc>,
}

impl<E> Clone for WindowSpec<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for WindowSpec<E> {}

impl<E> fmt::Debug for WindowSpec<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn recorded_at<E>(event: &EventEnvelope<E>) -> DateTime<Utc> {
    event.recorded_at
}

fn millis(what: &str, duration: Duration) -> Result<i64, InvalidWindow> {
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    if duration.is_zero() || duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(InvalidWindow(format!(
            "the {what} must be a positive whole number of milliseconds, not {duration:?}"
        )));
    }
    // A century: beyond it, times past the window's end leave chrono's range.
    if ms > 100 * 366 * 86_400_000 {
        return Err(InvalidWindow(format!(
            "the {what} of {duration:?} is longer than a century"
        )));
    }
    Ok(ms)
}

impl<E> WindowSpec<E> {
    fn new(kind: WindowKind) -> Self {
        Self {
            kind,
            lateness: Duration::ZERO,
            time: recorded_at,
        }
    }

    /// Tumbling windows of `size`.
    ///
    /// # Errors
    ///
    /// [`InvalidWindow`] unless `size` is a positive whole number of
    /// milliseconds, at most a century.
    pub fn tumbling(size: Duration) -> Result<Self, InvalidWindow> {
        millis("size", size)?;
        Ok(Self::new(WindowKind::Tumbling { size }))
    }

    /// Hopping windows of `size`, one starting every `hop`.
    ///
    /// # Errors
    ///
    /// [`InvalidWindow`] unless both are positive whole milliseconds,
    /// `hop` divides `size`, and an event falls in at most
    /// [`MAX_WINDOWS_PER_EVENT`] windows.
    pub fn hopping(size: Duration, hop: Duration) -> Result<Self, InvalidWindow> {
        let size_ms = millis("size", size)?;
        let hop_ms = millis("hop", hop)?;
        if size_ms % hop_ms != 0 {
            return Err(InvalidWindow(format!(
                "the hop ({hop:?}) must divide the size ({size:?})"
            )));
        }
        if (size_ms / hop_ms).unsigned_abs() > MAX_WINDOWS_PER_EVENT {
            return Err(InvalidWindow(format!(
                "each event would fall in {} windows of {size:?} every {hop:?}; at most {MAX_WINDOWS_PER_EVENT}: make the hop longer",
                size_ms / hop_ms
            )));
        }
        Ok(Self::new(WindowKind::Hopping { size, hop }))
    }

    /// Session windows that end after `gap` without an event.
    ///
    /// # Errors
    ///
    /// [`InvalidWindow`] unless `gap` is a positive whole number of
    /// milliseconds, at most a century.
    pub fn session(gap: Duration) -> Result<Self, InvalidWindow> {
        millis("gap", gap)?;
        Ok(Self::new(WindowKind::Session { gap }))
    }

    /// Keeps windows open for `lateness` after their key's watermark
    /// passed their end (default: none), so that events up to that late
    /// still count. Taken to the millisecond (what the recorded
    /// specification says), and at most a century.
    #[must_use]
    pub fn allowed_lateness(self, lateness: Duration) -> Self {
        let millis = u64::try_from(lateness.as_millis()).unwrap_or(u64::MAX);
        Self {
            lateness: Duration::from_millis(millis).min(Duration::from_secs(100 * 366 * 86_400)),
            ..self
        }
    }

    /// Takes each event's time from `time` (a time the event carries)
    /// instead of the time the store recorded it.
    #[must_use]
    pub fn event_time(self, time: fn(&EventEnvelope<E>) -> DateTime<Utc>) -> Self {
        Self { time, ..self }
    }

    /// The kind and size of the windows.
    pub fn kind(&self) -> WindowKind {
        self.kind
    }

    /// The allowed lateness.
    pub fn lateness(&self) -> Duration {
        self.lateness
    }

    /// The kind, sizes and lateness in words, as a store records them to
    /// refuse a runner configured otherwise: `tumbling 300000 ms, lateness
    /// 60000 ms`. (The source of event time is not part of it.)
    pub fn describe(&self) -> String {
        let ms = |duration: Duration| duration.as_millis();
        let kind = match self.kind {
            WindowKind::Tumbling { size } => format!("tumbling {} ms", ms(size)),
            WindowKind::Hopping { size, hop } => {
                format!("hopping {} ms every {} ms", ms(size), ms(hop))
            }
            WindowKind::Session { gap } => format!("session gap {} ms", ms(gap)),
        };
        format!("{kind}, lateness {} ms", ms(self.lateness))
    }

    /// The event's time, to the microsecond (what PostgreSQL keeps).
    pub(crate) fn time_of(&self, event: &EventEnvelope<E>) -> DateTime<Utc> {
        let time = (self.time)(event);
        DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
    }

    /// The lateness as a chrono delta.
    pub(crate) fn lateness_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.lateness).unwrap_or(chrono::TimeDelta::MAX)
    }

    /// Whether a window ending at `end` is closed when its key's watermark
    /// is `watermark`: the watermark passed the end by the lateness.
    pub fn closed(&self, end: DateTime<Utc>, watermark: Option<DateTime<Utc>>) -> bool {
        watermark.is_some_and(|watermark| {
            end.checked_add_signed(self.lateness_delta())
                .is_some_and(|closes| watermark >= closes)
        })
    }
}

/// `duration` as a chrono delta (validated durations always fit).
pub(crate) fn delta(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}
