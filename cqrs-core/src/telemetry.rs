//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: install
//! any exporter (Prometheus, StatsD, ...) in the application and these
//! appear; without one they cost next to nothing. Names follow Prometheus'
//! conventions (`_total` for counters, base units in the name).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `cqrskit_commands_total` | counter | `aggregate`, `outcome` (`executed`, `rejected`, `conflicted`, `failed`) | commands carried out by a pipeline, by how they ended |
//! | `cqrskit_command_retries_total` | counter | `aggregate` | attempts made again after a conflict |
//! | `cqrskit_command_duration_seconds` | histogram | `aggregate` | from `execute` to its answer, retries included |
//! | `cqrskit_events_appended_total` | counter | `aggregate` | events a pipeline's commands stored |
//! | `cqrskit_append_duration_seconds` | histogram | `aggregate`, `outcome` (`appended`, `conflicted`, `failed`) | one append to the store: its round trips and commit, without loading or deciding |
//! | `cqrskit_projection_events_applied_total` | counter | `projection` | events a PostgreSQL runner applied and committed |
//! | `cqrskit_projection_lag_seconds` | gauge | `projection` | age of the last event applied, 0 once caught up |
//! | `cqrskit_projection_lag_events` | gauge | `projection` | events of its types still to apply (counted every poll interval, up to 1,000,000), 0 once caught up |
//! | `cqrskit_projection_lease_held` | gauge | `projection` | 1 while this process holds the projection's lease |
//! | `cqrskit_projection_dead_letters` | gauge | `projection` | events parked and not resolved |
//! | `cqrskit_relay_messages_published_total` | counter | `relay` | messages JetStream acknowledged to a relay |

/// Commands carried out, by aggregate type and outcome.
pub const COMMANDS: &str = "cqrskit_commands_total";
/// Attempts made again after a conflict, by aggregate type.
pub const COMMAND_RETRIES: &str = "cqrskit_command_retries_total";
/// Seconds from `execute` to its answer, by aggregate type.
pub const COMMAND_DURATION: &str = "cqrskit_command_duration_seconds";
/// Events stored by commands, by aggregate type.
pub const EVENTS_APPENDED: &str = "cqrskit_events_appended_total";
/// Seconds one append to the store took, by aggregate type and outcome.
pub const APPEND_DURATION: &str = "cqrskit_append_duration_seconds";
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
/// Messages JetStream acknowledged to a relay, by relay.
pub const RELAY_PUBLISHED: &str = "cqrskit_relay_messages_published_total";
