//! The relay's and the consumers' metrics, through the
//! [`metrics`](https://docs.rs/metrics) facade (see `cqrskit::telemetry`
//! for the command pipeline's, and how to export them).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `cqrskit_relay_messages_published_total` | counter | `relay` | messages JetStream acknowledged to a relay |
//! | `cqrskit_consumer_messages_total` | counter | `consumer`, `outcome` | messages a consumer took, by what came of each: `handled`, `already_processed`, `retrying`, `dead_lettered` |
//! | `cqrskit_consumer_pending_messages` | gauge | `consumer` | messages of its stream not yet delivered to the consumer, as JetStream counted them at its last message: its lag |

/// Messages JetStream acknowledged to a relay, by relay.
pub const RELAY_PUBLISHED: &str = "cqrskit_relay_messages_published_total";

/// Messages a consumer took, by consumer and outcome.
pub const CONSUMER_MESSAGES: &str = "cqrskit_consumer_messages_total";

/// Messages not yet delivered to a consumer (its lag), by consumer.
pub const CONSUMER_PENDING: &str = "cqrskit_consumer_pending_messages";
