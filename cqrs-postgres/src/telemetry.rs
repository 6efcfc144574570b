//! The projection runner's metrics, through the
//! [`metrics`](https://docs.rs/metrics) facade (see `cqrskit::telemetry` for
//! the command pipeline's, and how to export them).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `cqrskit_projection_events_applied_total` | counter | `projection` | events a PostgreSQL runner applied and committed |
//! | `cqrskit_projection_lag_seconds` | gauge | `projection` | age of the last event applied, 0 once caught up |
//! | `cqrskit_projection_lag_events` | gauge | `projection` | events of its types still to apply (counted every poll interval, up to 1,000,000), 0 once caught up |
//! | `cqrskit_projection_lease_held` | gauge | `projection` | 1 while this process holds the projection's lease |
//! | `cqrskit_projection_dead_letters` | gauge | `projection` | events parked and not resolved |

/// Events a projection runner applied, by projection.
pub const PROJECTION_EVENTS_APPLIED: &str = "cqrskit_projection_events_applied_total";
/// Age in seconds of the last event a projection applied, by projection.
pub const PROJECTION_LAG: &str = "cqrskit_projection_lag_seconds";
/// Events a projection has still to apply (up to 1,000,000), by projection.
pub const PROJECTION_LAG_EVENTS: &str = "cqrskit_projection_lag_events";
/// 1 while this process holds a projection's lease, by projection.
pub const PROJECTION_LEASE_HELD: &str = "cqrskit_projection_lease_held";
/// Parked events not resolved, by projection.
pub const PROJECTION_DEAD_LETTERS: &str = "cqrskit_projection_dead_letters";
