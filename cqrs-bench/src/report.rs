//! One result line per scenario, and latency percentiles.

use std::fmt;
use std::time::Duration;

/// What one scenario measured: the framework and its raw-SQL baseline, from
/// the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The framework's figure.
    pub framework: f64,
    /// The baseline's figure.
    pub baseline: f64,
    /// The unit of both (`ops/s`, `events/s`, `ms`).
    pub unit: &'static str,
    /// Framework latencies, for scenarios that time single commands.
    pub latency: Option<Latency>,
    /// The slowest sample of the framework and of the baseline, for
    /// scenarios where the worst case is the point.
    pub max: Option<(Duration, Duration)>,
    /// The same figure for a peer framework, where one ran beside ours.
    pub peer: Option<f64>,
    /// The peer's median and 99th percentile, where single commands are timed.
    pub peer_latency: Option<(Duration, Duration)>,
}

impl Report {
    /// A report with no latencies, no worst case and no peer.
    pub fn new(scenario: &'static str, framework: f64, baseline: f64, unit: &'static str) -> Self {
        Self {
            scenario,
            framework,
            baseline,
            unit,
            latency: None,
            max: None,
            peer: None,
            peer_latency: None,
        }
    }

    /// The same report, with per-operation latencies.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
    }

    /// The same report, with a peer framework's figure.
    pub fn with_peer(self, peer: f64) -> Self {
        Self {
            peer: Some(peer),
            ..self
        }
    }

    /// The same report, with the peer's median and 99th percentile.
    pub fn with_peer_latency(self, (p50, p99): (Duration, Duration)) -> Self {
        Self {
            peer_latency: Some((p50, p99)),
            ..self
        }
    }

    /// The same report, with the slowest samples.
    pub fn with_max(self, framework: Duration, baseline: Duration) -> Self {
        Self {
            max: Some((framework, baseline)),
            ..self
        }
    }

    /// framework / baseline.
    pub fn ratio(&self) -> f64 {
        self.framework / self.baseline
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario={} framework={:.2} baseline={:.2} unit={} ratio={:.3}",
            self.scenario,
            self.framework,
            self.baseline,
            self.unit,
            self.ratio()
        )?;
        if let Some(latency) = &self.latency {
            write!(
                f,
                " p50_ms={:.3} p99_ms={:.3} baseline_p50_ms={:.3} baseline_p99_ms={:.3}",
                latency.p50.as_secs_f64() * 1e3,
                latency.p99.as_secs_f64() * 1e3,
                latency.baseline_p50.as_secs_f64() * 1e3,
                latency.baseline_p99.as_secs_f64() * 1e3
            )?;
        }
        if let Some(peer) = self.peer {
            write!(f, " peer={peer:.2} vs_peer={:.3}", self.framework / peer)?;
        }
        if let Some((p50, p99)) = self.peer_latency {
            write!(
                f,
                " peer_p50_ms={:.3} peer_p99_ms={:.3}",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            )?;
        }
        if let Some((framework, baseline)) = self.max {
            write!(
                f,
                " max_ms={:.3} baseline_max_ms={:.3}",
                framework.as_secs_f64() * 1e3,
                baseline.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}

/// Median and 99th percentile of the framework's and the baseline's latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Framework median.
    pub p50: Duration,
    /// Framework 99th percentile.
    pub p99: Duration,
    /// Baseline median.
    pub baseline_p50: Duration,
    /// Baseline 99th percentile.
    pub baseline_p99: Duration,
}

/// The `q`-quantile (0..=1) of `samples` (sorted in place).
pub(crate) fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[index.min(samples.len() - 1)]
}

/// A rate from a count and the time it took.
pub(crate) fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_shape() {
        let report = Report {
            scenario: "seq-command",
            framework: 1500.0,
            baseline: 2000.0,
            unit: "ops/s",
            latency: None,
            max: None,
            peer: None,
            peer_latency: None,
        };
        assert_eq!(
            report.to_string(),
            "scenario=seq-command framework=1500.00 baseline=2000.00 unit=ops/s ratio=0.750"
        );
    }

    #[test]
    fn quantiles_pick_from_the_sorted_samples() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut samples, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&mut samples, 0.99), Duration::from_millis(99));
    }
}
