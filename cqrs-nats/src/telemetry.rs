//! The relay's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade (see `cqrskit::telemetry` for the command pipeline's, and how to
//! export them).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `cqrskit_relay_messages_published_total` | counter | `relay` | messages JetStream acknowledged to a relay |

/// Messages JetStream acknowledged to a relay, by relay.
pub const RELAY_PUBLISHED: &str = "cqrskit_relay_messages_published_total";
