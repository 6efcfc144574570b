//! Unit, newtype, tuple and struct variants; renamed events; schema versions.

use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Opened {
    by: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
enum DoorEvent {
    Opened(Opened),
    #[event(name = "door.closed")]
    Closed,
    #[event(version = 3)]
    Painted { colour: String, coats: u8 },
    #[event(name = "door.measured", version = 2)]
    Measured(u32, u32),
}

fn round_trip(event: DoorEvent) -> DoorEvent {
    let payload = event.encode().expect("encodes");
    DoorEvent::decode(event.event_type(), event.event_version(), payload.get()).expect("decodes")
}

fn main() {
    assert_eq!(
        DoorEvent::EVENT_TYPES,
        ["Opened", "door.closed", "Painted", "door.measured"]
    );

    let opened: DoorEvent = Opened { by: "ann".into() }.into();
    assert_eq!(opened.event_type(), "Opened");
    assert_eq!(opened.event_version(), 1);
    assert_eq!(opened.encode().unwrap().get(), r#"{"by":"ann"}"#);

    assert_eq!(DoorEvent::Closed.event_type(), "door.closed");
    assert_eq!(DoorEvent::Closed.encode().unwrap().get(), "null");

    let painted = DoorEvent::Painted { colour: "red".into(), coats: 2 };
    assert_eq!((painted.event_type(), painted.event_version()), ("Painted", 3));

    let measured = DoorEvent::Measured(80, 200);
    assert_eq!(measured.encode().unwrap().get(), "[80,200]");

    for event in [opened, DoorEvent::Closed, painted, measured] {
        let expected = format!("{event:?}");
        assert_eq!(format!("{:?}", round_trip(event)), expected);
    }

    // A payload written by a newer schema version is refused, not misread.
    let payload = DoorEvent::Closed.encode().unwrap();
    let error = DoorEvent::decode("door.closed", 2, payload.get()).unwrap_err();
    assert!(matches!(error, cqrskit::PayloadError::UnsupportedVersion { event_version: 2, .. }));
    // Older versions reach decode (to be upcast there); the Rust name is not a stored name.
    let old = DoorEvent::Painted { colour: "x".into(), coats: 1 }.encode().unwrap();
    assert!(DoorEvent::decode("Painted", 1, old.get()).is_ok());
    assert!(DoorEvent::decode("Closed", 1, payload.get()).is_err());
}
