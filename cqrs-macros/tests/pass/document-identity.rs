//! A document over one enum: its own stream's document for some events,
//! ids taken from the event for others (one, none or several), the id and
//! the envelope handed to the methods that ask, deletes that answer.

use std::sync::Arc;

use cqrskit::document::{Change, Document, DocumentQueries, Identity, InMemoryDocuments};
use cqrskit::{DomainEvent, EventEnvelope, Projector, catch_up, document};
use cqrskit::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Position, StreamId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Joined {
    team: Option<String>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Kudos {
    to: Vec<String>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Left {
    really: bool,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ignored;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum PeopleEvent {
    Joined(Joined),
    Kudos(Kudos),
    Left(Left),
    Ignored(Ignored),
}

/// A person's card, or a team's (a team is named by the people who join it).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Card {
    name: String,
    members: Vec<String>,
    kudos: u32,
}

#[document(event = PeopleEvent)]
impl Card {
    #[id]
    fn joined_ids(event: &Joined, envelope: &EventEnvelope<PeopleEvent>) -> Vec<String> {
        // The person's own card, and their team's if they have one.
        let mut ids = vec![envelope.stream.aggregate_id.clone()];
        ids.extend(event.team.clone());
        ids
    }

    #[apply]
    fn joined(&mut self, _: &Joined, id: &str, envelope: &EventEnvelope<PeopleEvent>) {
        self.name = id.to_owned();
        if id != envelope.stream.aggregate_id {
            self.members.push(envelope.stream.aggregate_id.clone());
        }
    }

    #[id]
    fn kudos_to(event: &Kudos) -> &[String] {
        &event.to
    }

    #[apply]
    fn kudos(&mut self, _: &Kudos) -> Change {
        if self.name.is_empty() {
            // No card yet: kudos to nobody create none.
            return Change::Unchanged;
        }
        self.kudos += 1;
        Change::Updated
    }

    #[delete]
    fn left(&self, event: &Left) -> bool {
        event.really
    }
}

async fn append(store: &InMemoryEventStore, who: &str, events: Vec<PeopleEvent>) {
    let stream = StreamId::new("person", who);
    let events: Vec<NewEvent> = events
        .iter()
        .map(|event| NewEvent::from_event(event, Default::default()).unwrap())
        .collect();
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(<Card as Document>::NAME, "card");
    assert_eq!(<Card as Document>::EVENT_TYPES, ["Joined", "Kudos", "Left"]);
    assert_eq!(<Card as Document>::IDENTITY, Identity::Event);
    assert!(<Card as Document>::READS_METADATA, "`joined` takes the envelope");

    let store = Arc::new(InMemoryEventStore::new());
    let ada = |team: Option<&str>| Joined {
        team: team.map(str::to_owned),
    };
    append(&store, "ada", vec![ada(Some("core")).into()]).await;
    append(&store, "bob", vec![ada(None).into(), Ignored.into()]).await;
    let kudos = Kudos {
        to: vec!["ada".into(), "nobody".into(), "core".into(), "ada".into()],
    };
    append(&store, "eve", vec![kudos.into()]).await;
    append(&store, "bob", vec![Left { really: false }.into()]).await;
    append(&store, "ada", vec![Left { really: true }.into()]).await;

    let cards = InMemoryDocuments::<Card>::new();
    assert!(cards.partition_refusal().is_some(), "ids taken from events");
    catch_up(&*store, &cards, Position::START, 2).await.unwrap();
    let all = cards.matching(&serde_json::json!({})).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|card| card.id.as_str()).collect();
    assert_eq!(ids, ["bob", "core"], "ada left; nobody has no card");
    assert_eq!(
        all[1].document,
        Card {
            name: "core".into(),
            members: vec!["ada".into()],
            kudos: 1,
        }
    );
    assert_eq!(all[1].revision, 2);
    assert_eq!(all[0].revision, 1, "an answer of `false` changes nothing");
}
