//! Where the relay stands in its JetStream stream, so that what JetStream
//! stores is always in log order.
//!
//! Publishing many messages before their acknowledgements come back is
//! what makes a relay fast, and it is what lets JetStream store them out of
//! order: a message lost in flight when the server dies (or one the server
//! refuses, being too large) leaves a hole that the messages after it do
//! not notice, and the lost one lands after them when it is sent again.
//!
//! So every message states the sequence the stream's last message must have
//! for it to be stored (`Nats-Expected-Last-Sequence`): the sequence of the
//! message the relay sent before it. A message after a hole finds another
//! last sequence and is refused, and so is everything sent after it; the
//! stream's messages are always a prefix of what the relay sent, in log
//! order. After any failure the chain is read again from the stream: its
//! last sequence, and the log position of its last message (a header of
//! every message), before which nothing is sent again. Copies of what was
//! stored are then never sent at all, however long ago it was stored
//! (JetStream's duplicate window would only drop the copies it remembers).
//!
//! What this asks of the stream: the relay is its only publisher.

use async_nats::jetstream;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::RawMessageErrorKind;
use cqrskit_core::{BoxError, Position};

use super::StreamSpec;

/// The header carrying the log position of a message's event.
pub const POSITION_HEADER: &str = "Cqrskit-Log-Position";
/// The header carrying the name of the relay that published a message.
pub const RELAY_HEADER: &str = "Cqrskit-Relay";

/// The relay's place in its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Chain {
    /// The JetStream stream.
    pub(super) stream: std::sync::Arc<str>,
    /// The stream's last sequence once every message sent in this chain is
    /// stored: what the next message expects.
    pub(super) last_sequence: u64,
    /// The log position of the last event the stream held when the chain
    /// was read: events up to it are stored already.
    pub(super) stored_through: Option<Position>,
}

impl Chain {
    /// Whether `position`'s event is in the stream already.
    pub(super) fn holds(&self, position: Position) -> bool {
        self.stored_through
            .is_some_and(|through| position <= through)
    }

    /// Reads the chain of relay `relay` from its stream: `spec`'s stream
    /// (created again when missing, with a warning), or the one capturing
    /// `subjects` when the stream is managed elsewhere.
    ///
    /// # Errors
    ///
    /// When no stream captures the subjects (and none is to be created),
    /// when the stream's last message was published by another relay, or
    /// when JetStream does not answer.
    pub(super) async fn read(
        jetstream: &jetstream::Context,
        relay: &str,
        spec: Option<&StreamSpec>,
        subjects: &str,
    ) -> Result<Self, BoxError> {
        let stream = match spec {
            Some(spec) => match jetstream.get_stream(&spec.name).await {
                Ok(stream) => stream,
                Err(error) if is_missing(error.kind()) => {
                    tracing::warn!(
                        relay,
                        stream = %spec.name,
                        "the relay's JetStream stream is missing: creating it again; \
                         the events published into the deleted one are not sent again"
                    );
                    jetstream
                        .get_or_create_stream(spec.config(subjects, clustered(jetstream)))
                        .await
                        .map_err(|error| {
                            format!("creating JetStream stream `{}` again: {error}", spec.name)
                        })?
                }
                Err(error) => {
                    return Err(format!("reading JetStream stream `{}`: {error}", spec.name).into());
                }
            },
            None => {
                let name = jetstream
                    .stream_by_subject(subjects)
                    .await
                    .map_err(|error| {
                        format!(
                            "no JetStream stream captures `{subjects}` ({error}): create one, \
                         or give the relay a StreamSpec to create it"
                        )
                    })?;
                jetstream
                    .get_stream(&name)
                    .await
                    .map_err(|error| format!("reading JetStream stream `{name}`: {error}"))?
            }
        };
        let name = stream.cached_info().config.name.clone();
        let last_sequence = stream.cached_info().state.last_sequence;
        let stored_through = if last_sequence == 0 {
            None
        } else {
            match stream.get_raw_message(last_sequence).await {
                Ok(message) => {
                    if let Some(other) = message.headers.get(RELAY_HEADER)
                        && other.as_str() != relay
                    {
                        return Err(format!(
                            "JetStream stream `{name}` holds messages of relay `{other}` \
                             (its last, sequence {last_sequence}): relay `{relay}` needs a stream \
                             of its own"
                        )
                        .into());
                    }
                    // A message of an earlier version of the relay carries
                    // no position: copies are then dropped by JetStream's
                    // duplicate window alone, as they were.
                    message
                        .headers
                        .get(POSITION_HEADER)
                        .and_then(|position| position.as_str().parse().ok())
                }
                // The last message was deleted: nothing tells where it was.
                Err(error) if matches!(error.kind(), RawMessageErrorKind::NoMessageFound) => None,
                Err(error) => {
                    return Err(format!(
                        "reading the last message of JetStream stream `{name}`: {error}"
                    )
                    .into());
                }
            }
        };
        Ok(Self {
            stream: name.into(),
            last_sequence,
            stored_through,
        })
    }
}

/// Whether JetStream answered that the stream does not exist.
fn is_missing(kind: GetStreamErrorKind) -> bool {
    matches!(
        kind,
        GetStreamErrorKind::JetStream(error)
            if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Whether the server `jetstream` talks to is part of a cluster.
pub(super) fn clustered(jetstream: &jetstream::Context) -> bool {
    jetstream.client().server_info().cluster.is_some()
}
