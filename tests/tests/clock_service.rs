//! Time in an aggregate's decisions, as `docs/testing.md` shows it: the
//! clock is one of the aggregate's services, so a test moves it and the
//! same rule holds on every store; the time a handler read is in the
//! event, so loading the stream again never asks the clock.

use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::postgres::TestStore;
use cqrskit::chrono::{DateTime, SubsecRound, Utc};
use cqrskit::deadline::{Clock, ManualClock};
use cqrskit::{Command, CommandPipeline, DomainEvent, EventStore, InMemoryEventStore, aggregate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Borrowed {
    due: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Returned {
    late: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum LoanEvent {
    Borrowed(Borrowed),
    Returned(Returned),
}

struct Borrow;
struct Return;

#[derive(Command)]
enum LoanCommand {
    Borrow(Borrow),
    Return(Return),
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("the book is not borrowed")]
struct NotBorrowed;

struct Library {
    clock: Arc<dyn Clock>,
}

const LOAN_DAYS: i64 = 14;

#[derive(Default, Serialize, Deserialize)]
struct Loan {
    due: Option<DateTime<Utc>>,
}

#[aggregate(type = "loan", command = LoanCommand, event = LoanEvent, error = NotBorrowed, services = Library)]
impl Loan {
    #[command]
    fn borrow(&self, _: &Borrow, library: &Library) -> Result<Vec<LoanEvent>, NotBorrowed> {
        let due = library.clock.now() + cqrskit::chrono::Duration::days(LOAN_DAYS);
        Ok(vec![Borrowed { due }.into()])
    }

    #[command]
    fn give_back(&self, _: &Return, library: &Library) -> Result<Vec<LoanEvent>, NotBorrowed> {
        let due = self.due.ok_or(NotBorrowed)?;
        Ok(vec![
            Returned {
                late: library.clock.now() > due,
            }
            .into(),
        ])
    }

    #[apply]
    fn borrowed(&mut self, event: &Borrowed) {
        self.due = Some(event.due);
    }

    #[apply]
    fn returned(&mut self, _: &Returned) {
        self.due = None;
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Two loans on `store`, one returned in time and one late, by a clock the
/// test moves; the due date is the one the clock gave at borrowing.
async fn loans_by_the_services_clock(store: Arc<dyn EventStore>) {
    // PostgreSQL keeps microseconds: so does the clock.
    let start = Utc::now().trunc_subsecs(6);
    let clock = ManualClock::new(start);
    let loans = CommandPipeline::<Loan>::new(
        store,
        Library {
            clock: Arc::new(clock.clone()),
        },
    );
    for book in ["dune", "emma"] {
        let borrowed = loans.execute(book, Borrow).await.expect("borrow");
        assert_eq!(
            borrowed.events[0].payload,
            LoanEvent::from(Borrowed {
                due: start + cqrskit::chrono::Duration::days(LOAN_DAYS)
            })
        );
    }
    clock.advance(10 * DAY);
    let in_time = loans.execute("dune", Return).await.expect("return");
    assert_eq!(
        in_time.events[0].payload,
        LoanEvent::from(Returned { late: false })
    );
    clock.advance(5 * DAY);
    let late = loans.execute("emma", Return).await.expect("return");
    assert_eq!(
        late.events[0].payload,
        LoanEvent::from(Returned { late: true })
    );
    // The due date lives in the stream: a fresh pipeline with another
    // clock loads the same state.
    let reloaded = loans.load("dune").await.expect("load");
    assert_eq!(reloaded.state.due, None);
}

#[tokio::test]
async fn time_comes_from_the_services_on_the_in_memory_store() {
    loans_by_the_services_clock(Arc::new(InMemoryEventStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_comes_from_the_services_on_postgres() {
    let db = TestStore::new().await;
    loans_by_the_services_clock(db.shared()).await;
    db.drop_schema().await;
}
