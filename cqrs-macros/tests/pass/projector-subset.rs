//! A projector that handles some event types: its constant lists exactly
//! those, the store delivers only those, the others are skipped.

use std::sync::{Arc, Mutex};

use cqrskit::{
    CommandPipeline, DomainEvent, EventEnvelope, EventStore, InMemoryEventStore, LogFilter,
    Position, Projector, aggregate, catch_up, projector,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    n: i64,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reset;
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Renamed {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum TallyEvent {
    #[event(name = "tally.added")]
    Added(Added),
    Reset(Reset),
    Renamed(Renamed),
}

#[derive(cqrskit::Command)]
enum TallyCommand {
    Add(Added),
    Reset(Reset),
    Rename(Renamed),
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Default, Serialize, Deserialize)]
struct Tally;

#[aggregate(type = "tally", command = TallyCommand, event = TallyEvent, error = Never, ignore(Added, Reset, Renamed))]
impl Tally {
    #[command]
    fn add(&self, c: &Added) -> Result<Vec<TallyEvent>, Never> {
        Ok(vec![c.clone().into()])
    }
    #[command]
    fn reset(&self, c: &Reset) -> Result<Vec<TallyEvent>, Never> {
        Ok(vec![c.clone().into()])
    }
    #[command]
    fn rename(&self, c: &Renamed) -> Result<Vec<TallyEvent>, Never> {
        Ok(vec![c.clone().into()])
    }
}

/// Sums additions, starts over on resets, ignores renames.
#[derive(Default)]
struct Sum {
    total: Mutex<i64>,
    seen: Mutex<Vec<u64>>,
}

#[projector(event = TallyEvent)]
impl Sum {
    #[project]
    async fn added(&self, event: &Added, envelope: &EventEnvelope<TallyEvent>) -> Result<(), String> {
        *self.total.lock().unwrap() += event.n;
        self.seen.lock().unwrap().push(envelope.version);
        Ok(())
    }

    #[project]
    fn reset(&self, _event: &Reset) {
        *self.total.lock().unwrap() = 0;
    }
}

/// No method takes the envelope: it cannot see metadata, so stores may leave
/// it out of what they read for it.
struct Resets;

#[projector(event = TallyEvent)]
impl Resets {
    #[project]
    fn reset(&self, _event: &Reset) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(Sum::EVENT_TYPES, ["tally.added", "Reset"]);
    let sum = Arc::new(Sum::default());
    assert_eq!(sum.name(), "sum");
    assert_eq!(sum.event_types(), ["tally.added", "Reset"]);
    assert!(sum.reads_metadata(), "`added` takes the envelope");
    assert!(!Projector::<()>::reads_metadata(&Resets));

    let store = Arc::new(InMemoryEventStore::new());
    let tallies = CommandPipeline::<Tally>::new(store.clone(), ()).with_projector(sum.clone());
    tallies.execute("t", Added { n: 5 }).await.unwrap();
    tallies.execute("t", Renamed { name: "x".into() }).await.unwrap();
    tallies.execute("t", Reset).await.unwrap();
    tallies.execute("t", Added { n: 2 }).await.unwrap();
    tallies.execute("t", Added { n: 3 }).await.unwrap();
    assert_eq!(*sum.total.lock().unwrap(), 5);
    assert_eq!(*sum.seen.lock().unwrap(), [1, 4, 5]);

    // The store filters by the projector's constant: renames never leave it.
    let filter = LogFilter::event_types(Sum::EVENT_TYPES.iter().copied());
    let wanted = store.read_log(Position::START, &filter, 100).await.unwrap();
    assert_eq!(wanted.len(), 4);
    assert!(wanted.iter().all(|e| e.event_type != "Renamed"));

    let rebuilt = Sum::default();
    catch_up(&*store, &rebuilt, Position::START, 2).await.unwrap();
    assert_eq!(*rebuilt.total.lock().unwrap(), 5);
}
