//! A split consumer's partitions: who reads each, and forgetting the split
//! to change the partition count.

use cqrskit::postgres::admin::{Admin, ConsumerPartitionInfo};
use serde_json::json;

use crate::failure::Failure;
use crate::output::{self, cell};

/// `consumer`'s partitions.
pub(crate) async fn list(admin: &Admin, as_json: bool, consumer: &str) -> Result<(), Failure> {
    let partitions = admin.consumer_partitions(consumer).await?;
    output::listing(
        &partitions,
        as_json,
        &["PARTITION", "OF", "OWNER", "LEASE UNTIL", "TAKEOVERS"],
        |partition: &ConsumerPartitionInfo| {
            json!({
                "partition": partition.partition,
                "partitions": partition.partitions,
                "owner": partition.owner,
                "lease_expires_at": partition.lease_expires_at.map(|at| at.to_rfc3339()),
                "takeovers": partition.takeovers,
            })
        },
        |partition| {
            vec![
                partition.partition.to_string(),
                partition.partitions.to_string(),
                cell(partition.owner.as_deref()),
                cell(partition.lease_expires_at.map(|at| at.to_rfc3339())),
                partition.takeovers.to_string(),
            ]
        },
    );
    Ok(())
}

/// Forgets `consumer`'s split (refused while an instance runs).
pub(crate) async fn reset(admin: &Admin, as_json: bool, consumer: &str) -> Result<(), Failure> {
    let forgotten = admin.reset_consumer_partitions(consumer).await?;
    let message = if forgotten == 0 {
        format!("{consumer} is not split")
    } else {
        format!(
            "forgot the {forgotten} partitions of {consumer}: its next instance records its own count"
        )
    };
    output::done(as_json, &message);
    Ok(())
}
