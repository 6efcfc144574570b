//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: install
//! any exporter (Prometheus, StatsD, ...) in the application and these
//! appear; without one they cost next to nothing. Names follow Prometheus'
//! conventions (`_total` for counters, base units in the name). These are
//! the command pipeline's; the PostgreSQL runner's and the NATS relay's are
//! in `cqrskit::postgres::telemetry` and `cqrskit::nats::telemetry`.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `cqrskit_commands_total` | counter | `aggregate`, `outcome` (`executed`, `rejected`, `conflicted`, `failed`) | commands carried out by a pipeline, by how they ended |
//! | `cqrskit_command_retries_total` | counter | `aggregate` | attempts made again after a conflict |
//! | `cqrskit_command_duration_seconds` | histogram | `aggregate` | from `execute` to its answer, retries included |
//! | `cqrskit_events_appended_total` | counter | `aggregate` | events a pipeline's commands stored |
//! | `cqrskit_append_duration_seconds` | histogram | `aggregate`, `outcome` (`appended`, `conflicted`, `failed`) | one append to the store: its round trips and commit, without loading or deciding |

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
