//! How far behind a durable consumer is, as JetStream counts it: what an
//! operator asks of a consumer that lives in another process.

use async_nats::jetstream;

use super::next;
use crate::Error;

/// A durable consumer's position in its stream, as JetStream reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerLag {
    /// The stream it reads.
    pub stream: String,
    /// Messages of its subjects not delivered to it yet.
    pub pending: u64,
    /// Messages delivered and not acknowledged yet (in progress, or held
    /// behind a failed one of their stream).
    pub unacknowledged: u64,
}

/// The lag of the durable consumer `durable`, found in whichever stream
/// holds it; `None` when no stream has a consumer of that name. For a
/// consumer split into partitions (a `PartitionedConsumer`), the sum over
/// its partitions' current JetStream consumers.
///
/// # Errors
///
/// When NATS fails.
pub async fn consumer_lag(
    jetstream: &jetstream::Context,
    durable: &str,
) -> Result<Option<ConsumerLag>, Error> {
    let failed = |source: async_nats::Error| Error::Nats {
        consumer: durable.to_owned(),
        source,
    };
    let mut names = jetstream.stream_names();
    while let Some(name) = next(&mut names).await {
        let name = name.map_err(|error| failed(error.into()))?;
        let stream = jetstream
            .get_stream(&name)
            .await
            .map_err(|error| failed(error.into()))?;
        if let Ok(info) = stream.consumer_info(durable).await {
            return Ok(Some(ConsumerLag {
                stream: info.stream_name,
                pending: info.num_pending,
                unacknowledged: u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
            }));
        }
        let partitions = partition_consumers(&stream, durable)
            .await
            .map_err(failed)?;
        if partitions.is_empty() {
            continue;
        }
        let mut lag = ConsumerLag {
            stream: name,
            pending: 0,
            unacknowledged: 0,
        };
        for consumer in partitions.values() {
            let info = stream
                .consumer_info(consumer)
                .await
                .map_err(|error| failed(error.into()))?;
            lag.pending += info.num_pending;
            lag.unacknowledged += u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX);
        }
        return Ok(Some(lag));
    }
    Ok(None)
}

/// The current JetStream consumer of each partition of the split consumer
/// `durable` in `stream` (the one of the highest token), by partition.
async fn partition_consumers(
    stream: &jetstream::stream::Stream,
    durable: &str,
) -> Result<std::collections::BTreeMap<(usize, usize), String>, async_nats::Error> {
    let mut current: std::collections::BTreeMap<(usize, usize), (i64, String)> = Default::default();
    let mut names = stream.consumer_names();
    while let Some(name) = next(&mut names).await {
        let name = name?;
        let Some((index, count, token)) = super::succession::parse(durable, &name) else {
            continue;
        };
        let newer = current
            .get(&(index, count))
            .is_none_or(|(known, _)| *known < token);
        if newer {
            current.insert((index, count), (token, name));
        }
    }
    Ok(current
        .into_iter()
        .map(|(partition, (_, name))| (partition, name))
        .collect())
}
