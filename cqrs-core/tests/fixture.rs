//! The given/when/then fixture: passing expectations pass, and failing ones
//! fail the test with a report that shows what differed.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cqrskit_core::testing::{AggregateFixture, Then};
use cqrskit_core::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum DoorEvent {
    Opened,
    Closed { by: String },
}

impl DomainEvent for DoorEvent {
    const EVENT_TYPES: &'static [&'static str] = &["Opened", "Closed"];
    fn event_type(&self) -> &'static str {
        match self {
            DoorEvent::Opened => "Opened",
            DoorEvent::Closed { .. } => "Closed",
        }
    }
}

enum DoorCommand {
    Open,
    Close { by: String },
}

impl Command for DoorCommand {
    fn command_type(&self) -> &'static str {
        match self {
            DoorCommand::Open => "Open",
            DoorCommand::Close { .. } => "Close",
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum DoorError {
    #[error("the door is already open")]
    AlreadyOpen,
}

#[derive(Default, Serialize, Deserialize)]
struct Door {
    open: bool,
}

/// Closing records who closed it, twice over when a `loud` service says so,
/// so that a test can get an unexpected second event.
struct Loud(bool);

impl Aggregate for Door {
    const TYPE: &'static str = "door";
    type Command = DoorCommand;
    type Event = DoorEvent;
    type Error = DoorError;
    type Services = Loud;

    async fn handle(
        &self,
        command: &DoorCommand,
        loud: &Loud,
    ) -> Result<Vec<DoorEvent>, DoorError> {
        match command {
            DoorCommand::Open if self.open => Err(DoorError::AlreadyOpen),
            DoorCommand::Open => Ok(vec![DoorEvent::Opened]),
            DoorCommand::Close { by } => {
                let closed = DoorEvent::Closed { by: by.clone() };
                Ok(if loud.0 {
                    vec![closed.clone(), closed]
                } else {
                    vec![closed]
                })
            }
        }
    }

    fn apply(&mut self, event: &DoorEvent) {
        self.open = matches!(event, DoorEvent::Opened);
    }
}

fn panic_message(check: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(check)).expect_err("the expectation must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

async fn close(loud: bool) -> Then<Door> {
    AggregateFixture::<Door>::new(Loud(loud))
        .given([DoorEvent::Opened])
        .when(DoorCommand::Close { by: "ann".into() })
        .await
}

#[tokio::test]
async fn met_expectations_pass_and_services_reach_the_handler() {
    close(false)
        .await
        .then_expect_events([DoorEvent::Closed { by: "ann".into() }])
        .then_expect_state(|door| assert!(!door.open));
    AggregateFixture::<Door>::new(Loud(false))
        .given([DoorEvent::Opened])
        .when(DoorCommand::Open)
        .await
        .then_expect_error(DoorError::AlreadyOpen);
}

#[tokio::test]
async fn unexpected_events_fail_with_a_diff() {
    let then = close(true).await;
    let message = panic_message(|| {
        then.then_expect_events([DoorEvent::Closed { by: "ann".into() }]);
    });
    assert_eq!(
        message,
        "the command produced other events than expected (1 expected, 2 actual)\n\
         \x20   [0] Closed { by: \"ann\" }\n\
         \x20 + [1] Closed { by: \"ann\" }\n\
         \x20 (- expected, + actual)"
    );
}

#[tokio::test]
async fn a_differing_event_shows_both_sides() {
    let then = close(false).await;
    let message = panic_message(|| {
        then.then_expect_events([DoorEvent::Closed { by: "bob".into() }]);
    });
    assert!(
        message.contains("  - [0] Closed { by: \"bob\" }"),
        "{message}"
    );
    assert!(
        message.contains("  + [0] Closed { by: \"ann\" }"),
        "{message}"
    );
}

#[tokio::test]
async fn a_rejection_where_events_were_expected_fails_with_the_error() {
    let then = AggregateFixture::<Door>::new(Loud(false))
        .given([DoorEvent::Opened])
        .when(DoorCommand::Open)
        .await;
    let message = panic_message(|| {
        then.then_expect_events([DoorEvent::Opened]);
    });
    assert!(message.contains("the command was rejected"), "{message}");
    assert!(message.contains("AlreadyOpen"), "{message}");
}

#[tokio::test]
async fn events_where_an_error_was_expected_fail_with_the_events() {
    let then = close(false).await;
    let message = panic_message(|| {
        then.then_expect_error(DoorError::AlreadyOpen);
    });
    assert!(
        message.contains("expected the command to be rejected"),
        "{message}"
    );
    assert!(message.contains("Closed"), "{message}");

    let then = close(false).await;
    let message = panic_message(|| {
        then.then_expect_error_message("the door is already open");
    });
    assert!(
        message.contains("expected the command to be rejected"),
        "{message}"
    );
}
