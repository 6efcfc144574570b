//! The relay's and the consumers' metrics, through the
//! [`metrics`](https://docs.rs/metrics) facade (see `cqrskit::telemetry`
//! for the command pipeline's, and how to export them).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `cqrskit_relay_messages_published_total` | counter | `relay` | messages JetStream acknowledged to a relay |
//! | `cqrskit_consumer_messages_total` | counter | `consumer`, `outcome` | messages a consumer took, by what came of each: `handled`, `already_processed`, `retrying`, `dead_lettered` |
//! | `cqrskit_consumer_pending_messages` | gauge | `consumer` | messages of its stream not yet delivered to the consumer, as JetStream counted them at its last message: its lag |
//! | `cqrskit_consumer_pull_failures_total` | counter | `consumer` | pulls that failed or could not be opened (a server away, a cluster without quorum): why a consumer's lag grows while nothing comes |
//! | `cqrskit_consumer_partitions_held` | gauge | `consumer`, `owner` | partitions of a split consumer this instance reads |

/// Messages JetStream acknowledged to a relay, by relay.
pub const RELAY_PUBLISHED: &str = "cqrskit_relay_messages_published_total";

/// Messages a consumer took, by consumer and outcome.
pub const CONSUMER_MESSAGES: &str = "cqrskit_consumer_messages_total";

/// Messages not yet delivered to a consumer (its lag), by consumer.
pub const CONSUMER_PENDING: &str = "cqrskit_consumer_pending_messages";

/// Pulls that failed or could not be opened, by consumer.
pub const CONSUMER_PULL_FAILURES: &str = "cqrskit_consumer_pull_failures_total";

/// Partitions of a split consumer that an instance reads, by consumer and
/// instance.
pub const CONSUMER_PARTITIONS_HELD: &str = "cqrskit_consumer_partitions_held";
