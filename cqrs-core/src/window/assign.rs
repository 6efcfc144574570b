//! Which fixed windows an event time falls in: epoch-aligned, as
//! PostgreSQL's `date_bin` with origin 1970-01-01 places them.

use chrono::{DateTime, TimeDelta, Utc};

/// The windows `[start, start + size)` that contain `time`, one starting
/// every `hop`, oldest first.
pub(crate) fn fixed_windows(
    time: DateTime<Utc>,
    size: TimeDelta,
    hop: TimeDelta,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let t = time.timestamp_micros();
    let size_us = size.num_microseconds().unwrap_or(i64::MAX);
    let hop_us = hop.num_microseconds().unwrap_or(i64::MAX).max(1);
    let last = t.div_euclid(hop_us) * hop_us;
    let count = (size_us / hop_us).max(1);
    (0..count)
        .rev()
        .filter_map(|k| {
            let start = last.checked_sub(k.checked_mul(hop_us)?)?;
            let end = start.checked_add(size_us)?;
            Some((
                DateTime::from_timestamp_micros(start)?,
                DateTime::from_timestamp_micros(end)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone, Utc};

    use super::fixed_windows;

    #[test]
    fn windows_are_epoch_aligned_and_each_contains_the_time() {
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap();
        let five = TimeDelta::minutes(5);
        assert_eq!(
            fixed_windows(at(10, 7, 30), five, five),
            [(at(10, 5, 0), at(10, 10, 0))]
        );
        assert_eq!(
            fixed_windows(at(10, 10, 0), five, five),
            [(at(10, 10, 0), at(10, 15, 0))],
            "a window's end belongs to the next"
        );
        let hopping = fixed_windows(at(10, 7, 30), TimeDelta::minutes(15), five);
        assert_eq!(
            hopping,
            [
                (at(9, 55, 0), at(10, 10, 0)),
                (at(10, 0, 0), at(10, 15, 0)),
                (at(10, 5, 0), at(10, 20, 0)),
            ]
        );
        let before_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 58, 0).unwrap();
        let window = fixed_windows(before_epoch, five, five);
        assert_eq!(
            window,
            [(
                Utc.with_ymd_and_hms(1969, 12, 31, 23, 55, 0).unwrap(),
                Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap()
            )]
        );
    }
}
