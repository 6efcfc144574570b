//! A projector over two aggregates' events through an event union: its
//! constant lists the types of its methods from both enums, the store
//! delivers only those, each reaches its method, and a process manager
//! written the same way reacts to both.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cqrskit::{
    DomainEvent, EventEnvelope, EventStore, EventUnion, ExpectedVersion, InMemoryEventStore,
    LogFilter, Metadata, NewEvent, Position, Projector, StreamId, catch_up, projector,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BookAdded {
    title: String,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BookLent {
    member: String,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BookReturned;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum BookEvent {
    BookAdded(BookAdded),
    BookLent(BookLent),
    BookReturned(BookReturned),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MemberJoined {
    name: String,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MemberRenamed {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum MemberEvent {
    #[event(name = "member.joined")]
    MemberJoined(MemberJoined),
    MemberRenamed(MemberRenamed),
}

#[derive(Debug, Clone, PartialEq, EventUnion)]
enum LibraryEvent {
    Book(BookEvent),
    Member(MemberEvent),
}

/// Two members with a variant of one Rust name (stored under different
/// names): the union's serde form keeps them apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum BookNotes {
    #[event(name = "BookNoted")]
    Noted(Noted),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum MemberNotes {
    #[event(name = "MemberNoted")]
    Noted(Noted),
}

#[derive(Debug, Clone, PartialEq, EventUnion)]
enum Notes {
    Book(BookNotes),
    Member(MemberNotes),
}

/// Loans by member, with the book's title and the member's name: needs both.
#[derive(Default)]
struct LoansByMember {
    titles: Mutex<BTreeMap<String, String>>,
    names: Mutex<BTreeMap<String, String>>,
    loans: Mutex<Vec<(String, String)>>,
}

type Envelope = EventEnvelope<LibraryEvent>;

#[projector(event = LibraryEvent, name = "loans_by_member")]
impl LoansByMember {
    #[project]
    fn added(&self, event: &BookAdded, envelope: &Envelope) {
        self.titles
            .lock()
            .unwrap()
            .insert(envelope.stream.aggregate_id.clone(), event.title.clone());
    }

    #[project]
    fn lent(&self, event: &BookLent, envelope: &Envelope) {
        let title = self.titles.lock().unwrap()[&envelope.stream.aggregate_id].clone();
        let name = self.names.lock().unwrap()[&event.member].clone();
        self.loans.lock().unwrap().push((name, title));
    }

    #[project]
    fn joined(&self, event: &MemberJoined, envelope: &Envelope) {
        self.names
            .lock()
            .unwrap()
            .insert(envelope.stream.aggregate_id.clone(), event.name.clone());
    }
}

/// A process manager over both enums: what it would send, recorded.
#[derive(Default)]
struct Welcome {
    sent: Mutex<Vec<String>>,
}

#[projector(event = LibraryEvent)]
impl Welcome {
    #[project]
    async fn joined(&self, event: &MemberJoined) -> Result<(), String> {
        self.sent.lock().unwrap().push(format!("welcome {}", event.name));
        Ok(())
    }

    #[project]
    async fn returned(&self, _: &BookReturned, envelope: &Envelope) -> Result<(), String> {
        self.sent
            .lock()
            .unwrap()
            .push(format!("thanks for {}", envelope.stream.aggregate_id));
        Ok(())
    }
}

async fn append(store: &InMemoryEventStore, stream: StreamId, events: Vec<LibraryEvent>) {
    let events = events
        .iter()
        .map(|event| NewEvent::from_event(event, Metadata::default()).unwrap())
        .collect();
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(
        LibraryEvent::EVENT_TYPES,
        ["BookAdded", "BookLent", "BookReturned", "member.joined", "MemberRenamed"]
    );
    assert_eq!(LoansByMember::EVENT_TYPES, ["BookAdded", "BookLent", "member.joined"]);
    assert_eq!(Welcome::EVENT_TYPES, ["member.joined", "BookReturned"]);
    assert_eq!(Welcome::default().name(), "welcome");

    let store = InMemoryEventStore::new();
    let book = StreamId::new("book", "dune");
    let member = StreamId::new("member", "m1");
    append(&store, book.clone(), vec![BookEvent::BookAdded(BookAdded { title: "Dune".into() }).into()]).await;
    append(
        &store,
        member.clone(),
        vec![
            MemberEvent::MemberJoined(MemberJoined { name: "Ada".into() }).into(),
            MemberEvent::MemberRenamed(MemberRenamed { name: "Ada L.".into() }).into(),
        ],
    )
    .await;
    append(
        &store,
        book,
        vec![
            BookEvent::BookLent(BookLent { member: "m1".into() }).into(),
            BookEvent::BookReturned(BookReturned).into(),
        ],
    )
    .await;

    // The log read with the projector's constant skips the other types.
    let filter = LogFilter::event_types(LoansByMember::EVENT_TYPES.iter().copied());
    let wanted = store.read_log(Position::START, &filter, 100).await.unwrap();
    let types: Vec<&str> = wanted.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types, ["BookAdded", "member.joined", "BookLent"]);

    let loans = LoansByMember::default();
    catch_up(&store, &loans, Position::START, 2).await.unwrap();
    assert_eq!(*loans.loans.lock().unwrap(), [("Ada".to_owned(), "Dune".to_owned())]);

    let welcome = Arc::new(Welcome::default());
    catch_up(&store, &*welcome, Position::START, 10).await.unwrap();
    assert_eq!(*welcome.sent.lock().unwrap(), ["welcome Ada", "thanks for dune"]);

    // Payloads are the member's own: a union's encoding is the member's.
    let joined: LibraryEvent = MemberEvent::MemberJoined(MemberJoined { name: "Bo".into() }).into();
    assert_eq!(joined.encode().unwrap().get(), r#"{"name":"Bo"}"#);
    assert_eq!(joined.event_type(), "member.joined");
    let json = serde_json::to_string(&joined).unwrap();
    assert_eq!(serde_json::from_str::<LibraryEvent>(&json).unwrap(), joined);
    assert_eq!(json, r#"{"Member":{"MemberJoined":{"name":"Bo"}}}"#);
    let member_note = Notes::Member(MemberNotes::Noted(Noted));
    let text = serde_json::to_string(&member_note).unwrap();
    assert_eq!(serde_json::from_str::<Notes>(&text).unwrap(), member_note);
    assert_eq!(Notes::decode("MemberNoted", 1, "null").unwrap(), member_note);
    assert!(matches!(
        LibraryEvent::decode("Shelved", 1, "{}"),
        Err(cqrskit::PayloadError::UnknownEventType { .. })
    ));
}
