//! Command ids, and the event ids derived from them.
//!
//! Every command the pipeline carries out has an id; the ids of the events
//! it produces are derived from it. Carrying the same command out again,
//! after an answer was lost, therefore produces the same event ids, which
//! the store recognises: the command is applied once, however often it is
//! sent.
//!
//! Derived ids keep the first 48 bits (a UUID v7's millisecond timestamp) of
//! the id they come from, so events of commands with v7 ids are still
//! inserted in roughly time order into the event id index; the other bits
//! are a SHA-1 name-based hash (as in UUID v5), marked as UUID v8.

use uuid::Uuid;

use crate::{EventEnvelope, StreamId};

/// The id of event number `index` (from 0) of the command `command_id`.
pub fn event_id(command_id: Uuid, index: usize) -> Uuid {
    derive(command_id, &(index as u64).to_be_bytes())
}

/// The id of the command a handler of `event` sends to `stream`
/// (`command_type` as [`Command::command_type`](crate::Command::command_type)
/// names it): the same for every delivery of the event, so a process
/// manager that sees an event twice (after a crash, a redelivery) issues its
/// command once.
///
/// Two commands of the same type to the same aggregate for one event share
/// an id; a handler that sends such commands gives each its own id with
/// [`for_event_keyed`].
pub fn for_event<E>(event: &EventEnvelope<E>, stream: &StreamId, command_type: &str) -> Uuid {
    for_event_keyed(event, &format!("{stream}\u{1f}{command_type}"))
}

/// The id of the command a handler of `event` sends under `key` (any text
/// that tells this command apart from the event's other commands).
pub fn for_event_keyed<E>(event: &EventEnvelope<E>, key: &str) -> Uuid {
    derive(event.event_id, key.as_bytes())
}

/// The id of the command a handler of a message from outside (another
/// service's event through a broker) sends to `stream`: derived from the
/// message's identity, its `source` and `id` (a CloudEvent's), so that a
/// message delivered again issues its command once through
/// [`execute_once`](crate::CommandPipeline::execute_once). Messages whose
/// ids are not UUIDs get one all the same.
pub fn for_message(source: &str, id: &str, stream: &StreamId, command_type: &str) -> Uuid {
    let key = format!("{source}\u{1f}{id}\u{1f}{stream}\u{1f}{command_type}");
    Uuid::new_v5(&MESSAGE_NAMESPACE, key.as_bytes())
}

/// The namespace of command ids derived from messages.
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x3c5b_9e2a_71d4_4f08_b6e3_58a1_0d97_c24f);

fn derive(base: Uuid, name: &[u8]) -> Uuid {
    let hashed = Uuid::new_v5(&base, name).into_bytes();
    let mut bytes = base.into_bytes();
    bytes[6..].copy_from_slice(&hashed[6..]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_distinct_and_keep_the_command_time() {
        let command = Uuid::now_v7();
        let first = event_id(command, 0);
        assert_eq!(first, event_id(command, 0));
        assert_ne!(first, event_id(command, 1));
        assert_ne!(first, event_id(Uuid::now_v7(), 0));
        assert_eq!(first.as_bytes()[..6], command.as_bytes()[..6]);
        assert_eq!(first.get_version_num(), 8);
    }

    #[test]
    fn derivation_does_not_change_across_versions() {
        // Fixed forever: a retry after an upgrade must find the first attempt.
        let command = Uuid::from_u128(0x0192_3456_789a_7bcd_8ef0_1234_5678_9abc);
        assert_eq!(
            event_id(command, 2).to_string(),
            EXPECTED_EVENT_ID_2,
            "the derivation of event ids changed"
        );
    }

    #[test]
    fn a_message_gives_one_command_id_per_identity_target_and_command() {
        let stream = StreamId::new("shipment", "o1");
        let id = for_message("orders", "m-1", &stream, "PrepareShipment");
        assert_eq!(id, for_message("orders", "m-1", &stream, "PrepareShipment"));
        assert_ne!(
            id,
            for_message("billing", "m-1", &stream, "PrepareShipment")
        );
        assert_ne!(id, for_message("orders", "m-2", &stream, "PrepareShipment"));
        assert_ne!(
            id,
            for_message(
                "orders",
                "m-1",
                &StreamId::new("shipment", "o2"),
                "PrepareShipment"
            )
        );
        assert_ne!(id, for_message("orders", "m-1", &stream, "CancelShipment"));
        // Fixed forever, like event ids: a redelivery after an upgrade
        // must find the first execution.
        assert_eq!(id.to_string(), EXPECTED_MESSAGE_COMMAND_ID);
    }

    const EXPECTED_MESSAGE_COMMAND_ID: &str = "f6f2dfc8-9e57-50d4-bc63-80b913322d8c";

    const EXPECTED_EVENT_ID_2: &str = "01923456-789a-81d4-968b-db2f79ea6678";
}
