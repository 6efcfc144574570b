//! The JetStream consumers of a split consumer's partitions: one per
//! holder of a partition's lease, named after the partition and the lease's
//! fencing token (`<durable>-p<index>of<count>-<token>`), each starting
//! where the one before it stood.

use async_nats::jetstream::{self, consumer::pull};
use cqrskit_core::BoxError;

use super::next;
use crate::{ConsumerOptions, ConsumerPartition};

/// Where a partition's new JetStream consumer starts.
pub(super) struct Successor {
    /// Its name.
    pub(super) name: String,
    /// The stream sequence it starts at.
    pub(super) start: u64,
    /// The last stream sequence its predecessor delivered: messages up to
    /// it may have been handled or dead-lettered already.
    pub(super) redelivered_through: u64,
}

/// The name of the JetStream consumer of `partition` of `durable` under
/// `token`.
fn name(durable: &str, partition: ConsumerPartition, token: i64) -> String {
    format!(
        "{durable}-p{}of{}-{token}",
        partition.index(),
        partition.count()
    )
}

/// What the JetStream consumer `name` is, if it is one of a partition of
/// `durable`: its index, partition count and token.
pub(super) fn parse(durable: &str, name: &str) -> Option<(usize, usize, i64)> {
    let rest = name.strip_prefix(durable)?.strip_prefix("-p")?;
    let (index, rest) = rest.split_once("of")?;
    let (count, token) = rest.split_once('-')?;
    Some((
        index.parse().ok()?,
        count.parse().ok()?,
        token.parse().ok()?,
    ))
}

/// Makes the JetStream consumer of `partition` of `options.durable` under
/// `token`, reading `filter_subject`: it starts after its predecessor's
/// acknowledgement floor (the partition's consumer of the highest lower
/// token), at the stream's start when there is none. Deletes the
/// predecessors, and any consumer of the partition with a token not lower
/// (left from before the split was reset, which restarts the tokens).
pub(super) async fn succeed(
    stream: &jetstream::stream::Stream,
    options: &ConsumerOptions,
    partition: ConsumerPartition,
    filter_subject: String,
    token: i64,
) -> Result<Successor, BoxError> {
    let durable = &options.durable;
    let (mut earlier, mut stale) = (Vec::new(), Vec::new());
    let mut names = stream.consumer_names();
    while let Some(listed) = next(&mut names).await {
        let listed = listed?;
        match parse(durable, &listed) {
            Some((index, count, earlier_token))
                if index == partition.index() && count == partition.count() =>
            {
                if earlier_token < token {
                    earlier.push((earlier_token, listed));
                } else {
                    stale.push(listed);
                }
            }
            _ => {}
        }
    }
    for old in &stale {
        stream.delete_consumer(old).await?;
    }
    earlier.sort();
    let (start, redelivered_through) = match earlier.last() {
        Some((_, last)) => {
            let info = stream.consumer_info(last).await?;
            (
                info.ack_floor.stream_sequence + 1,
                info.delivered.stream_sequence,
            )
        }
        None => (1, 0),
    };
    let name = name(durable, partition, token);
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name.clone()),
            filter_subject,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_deliver: options.max_deliver(),
            ..Default::default()
        })
        .await?;
    for (_, old) in earlier {
        if let Err(error) = stream.delete_consumer(&old).await {
            tracing::warn!(consumer = %durable, jetstream_consumer = %old, %error, "cannot delete a partition's previous JetStream consumer; its next holder deletes it");
        }
    }
    Ok(Successor {
        name,
        start,
        redelivered_through,
    })
}

/// Deletes the JetStream consumers of `durable`'s partitions under a count
/// other than `count`: left from before its split was reset, they would
/// hold their messages in the stream's interest forever.
pub(super) async fn forget_other_splits(
    stream: &jetstream::stream::Stream,
    durable: &str,
    count: usize,
) -> Result<(), BoxError> {
    let mut others = Vec::new();
    let mut names = stream.consumer_names();
    while let Some(listed) = next(&mut names).await {
        let listed = listed?;
        if parse(durable, &listed).is_some_and(|(_, other, _)| other != count) {
            others.push(listed);
        }
    }
    for other in others {
        tracing::info!(consumer = %durable, jetstream_consumer = %other, "deleting a JetStream consumer of an earlier split");
        stream.delete_consumer(&other).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_consumers_name_reads_back_and_no_other_name_does() {
        let partition = ConsumerPartition::new(3, 8).expect("valid");
        let named = name("ship-ping", partition, 42);
        assert_eq!(named, "ship-ping-p3of8-42");
        assert_eq!(parse("ship-ping", &named), Some((3, 8, 42)));
        assert_eq!(parse("ship", &named), None, "another durable's");
        assert_eq!(parse("ship-ping", "ship-ping"), None);
        assert_eq!(parse("ship-ping", "ship-ping-priority"), None);
        assert_eq!(parse("ship-ping", "ship-ping-p3of8-x"), None);
    }
}
