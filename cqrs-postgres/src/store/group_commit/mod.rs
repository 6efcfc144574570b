//! Group commit: appends of concurrent commands to different streams,
//! written by one statement and one commit (on by default, see
//! [`StoreOptions::group_commit`](super::StoreOptions::group_commit)).
//!
//! Two regimes. While no group is being formed or written, an append is
//! written at once by its caller, alone, with no hop through another task,
//! as long as fewer than `max_alone` are: commands one after another, or a
//! few at once, run in parallel as without grouping. An append that finds
//! no such place, or finds a group forming or in flight, goes to one task
//! that writes groups, at most `max_in_flight` statements at once: whatever
//! arrived while the groups in flight were being written forms the next
//! group, so under load the groups grow and the commits stay few. Each
//! append keeps its own outcome: one that cannot be written as it is (its
//! stream moved on, its ids are taken, another append in the group collided
//! with a racing writer) is handed back unwritten, and its caller writes it
//! on its own, which reports a conflict or a retry exactly as without
//! grouping.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::append::Appender;
use super::batch::{Batch, GroupColumns};
use super::*;

/// How a store groups appends (see
/// [`StoreOptions::group_commit`](super::StoreOptions::group_commit)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    max_appends: usize,
    max_in_flight: usize,
    max_alone: usize,
}

impl Default for GroupCommit {
    /// Groups of up to 64 appends, at most two groups in flight, and up to
    /// four appends written alone while no group forms.
    fn default() -> Self {
        Self {
            max_appends: 64,
            max_in_flight: 2,
            max_alone: 4,
        }
    }
}

impl GroupCommit {
    /// At most `appends` appends per group (at least 1). More than 64 would
    /// make one statement's events long to lock and to index.
    pub fn max_appends(mut self, appends: usize) -> Self {
        self.max_appends = appends.max(1);
        self
    }

    /// At most `groups` group statements being written at once (at least
    /// 1), each on a pooled connection of its own. Fewer make larger groups
    /// (fewer commits); more keep latency low when the server has cores to
    /// spare.
    pub fn max_in_flight(mut self, groups: usize) -> Self {
        self.max_in_flight = groups.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// At most `appends` appends written alone by their callers at once,
    /// and only while no group is forming or in flight: a few commands at
    /// a time run in parallel, with no hop and no wait for a group. `0`
    /// sends every append that can be grouped through the group writer.
    pub fn max_alone(mut self, appends: usize) -> Self {
        self.max_alone = appends.min(Semaphore::MAX_PERMITS);
        self
    }
}

/// A store's group commit: its options, and the task writing the groups,
/// started by the first append.
#[derive(Debug)]
pub(super) struct Grouping {
    options: GroupCommit,
    /// The places for group statements in flight.
    in_flight: Arc<Semaphore>,
    /// The places for lone appends written by their callers.
    alone: Arc<Semaphore>,
    /// Appends handed to the group writer and not yet in a group.
    waiting: Arc<AtomicUsize>,
    /// When an append was last queued for a group or a group last answered.
    activity: Arc<Activity>,
    /// [`GROUPING_LINGER`], longer in tests that must not race the clock.
    linger: std::time::Duration,
    requests: OnceLock<mpsc::UnboundedSender<Request>>,
}

/// The last moment of grouping: an append queued, or a group answered.
#[derive(Debug)]
struct Activity {
    since: std::time::Instant,
    /// Nanoseconds after `since`; 0: never. Only moves forward.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            since: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn elapsed(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.fetch_max(self.elapsed().max(1), Ordering::AcqRel);
    }

    /// Whether nothing happened for `quiet`.
    fn quiet_for(&self, quiet: std::time::Duration) -> bool {
        match self.last.load(Ordering::Acquire) {
            0 => true,
            last => {
                self.elapsed().saturating_sub(last)
                    > u64::try_from(quiet.as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }
}

/// How long after the last grouping (an append queued for a group, a group
/// answered) appends keep joining groups rather than being written alone: a
/// few commits' time, so that under steady load the regime does not flip
/// each time a group is answered and its callers' next appends arrive, and
/// lone appends do not split the groups as they form.
const GROUPING_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// What grouping did with one append.
pub(super) enum Grouped {
    /// Stored with its group.
    Stored(AppendResult),
    /// Not written: the caller writes it alone.
    NotWritten,
    /// Sent with its group, whose commit's answer was lost.
    Failed(StoreError),
    /// No group was forming and a lone place was free: the caller writes
    /// it now, holding the place until its statement is answered.
    Alone(OwnedSemaphorePermit),
}

/// One append waiting for its group.
struct Request {
    stream: StreamId,
    after: u64,
    batch: Arc<Batch>,
    reply: oneshot::Sender<Grouped>,
}

/// What the task writing groups needs of the store.
struct Writer {
    db: Database,
    sql: Arc<Statements>,
    notifier: Arc<Notifier>,
}

impl Grouping {
    pub(super) fn new(options: GroupCommit) -> Self {
        Self {
            options,
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            alone: Arc::new(Semaphore::new(options.max_alone)),
            waiting: Arc::new(AtomicUsize::new(0)),
            activity: Arc::new(Activity::new()),
            linger: GROUPING_LINGER,
            requests: OnceLock::new(),
        }
    }

    /// Hands the append of `batch` right after version `after` of `stream`
    /// to the group writer of `store`, and waits for its outcome.
    pub(super) async fn append(
        &self,
        store: &Appender<'_>,
        stream: &StreamId,
        after: u64,
        batch: Arc<Batch>,
    ) -> Grouped {
        // Alone while no group forms or is written: once one does, later
        // appends join the next group, which is what makes groups grow
        // under load (lone statements beside them would only split it).
        if self.grouping_idle()
            && let Ok(place) = self.alone.clone().try_acquire_owned()
        {
            return Grouped::Alone(place);
        }
        let requests = self.requests.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let writer = Writer {
                db: store.db.clone(),
                sql: store.sql.clone(),
                notifier: store.notifier.clone(),
            };
            tokio::spawn(run(
                receiver,
                Arc::new(writer),
                self.in_flight.clone(),
                self.waiting.clone(),
                self.activity.clone(),
                self.options,
            ));
            sender
        });
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            stream: stream.clone(),
            after,
            batch,
            reply,
        };
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.activity.touch();
        if requests.send(request).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Grouped::NotWritten;
        }
        // A group dropped without an answer wrote nothing or committed:
        // the caller's own append tells which (it recognises its ids).
        outcome.await.unwrap_or(Grouped::NotWritten)
    }

    /// Whether no append waits for a group, no group is in flight, and
    /// nothing was grouped for [`GROUPING_LINGER`].
    fn grouping_idle(&self) -> bool {
        self.waiting.load(Ordering::Acquire) == 0
            && self.in_flight.available_permits() == self.options.max_in_flight
            && self.activity.quiet_for(self.linger)
    }
}

/// The group writer: once an append waits, takes what has queued, up to a
/// group, as soon as a place for a statement is free. Ends with the
/// store's last handle.
async fn run(
    mut requests: mpsc::UnboundedReceiver<Request>,
    writer: Arc<Writer>,
    in_flight: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    activity: Arc<Activity>,
    options: GroupCommit,
) {
    loop {
        let Some(first) = requests.recv().await else {
            return;
        };
        // While it waits for a place, more appends queue behind `first`.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut streams = HashSet::from([first.stream.clone()]);
        let mut ids: HashSet<Uuid> = first.batch.ids.iter().copied().collect();
        let mut group = vec![first];
        let mut taken = 1;
        while group.len() < options.max_appends {
            let Ok(request) = requests.try_recv() else {
                break;
            };
            taken += 1;
            // Two appends to one stream, or naming one event id, would
            // collide in one group: the later is written by its caller.
            let apart = !streams.contains(&request.stream)
                && !request.batch.ids.iter().any(|id| ids.contains(id));
            if apart {
                streams.insert(request.stream.clone());
                ids.extend(request.batch.ids.iter().copied());
                group.push(request);
            } else {
                let _ = request.reply.send(Grouped::NotWritten);
            }
        }
        // Taken off the queue only now: while `first` waited for a place,
        // it was still waiting, and new appends joined it.
        waiting.fetch_sub(taken, Ordering::AcqRel);
        tokio::spawn(flush(writer.clone(), group, permit, activity.clone()));
    }
}

/// Writes one group and answers each of its appends.
async fn flush(
    writer: Arc<Writer>,
    group: Vec<Request>,
    permit: OwnedSemaphorePermit,
    activity: Arc<Activity>,
) {
    let outcomes = writer.write(&group).await;
    // Before the answers: their callers' next appends find grouping busy.
    activity.touch();
    drop(permit);
    for (request, outcome) in group.into_iter().zip(outcomes) {
        let _ = request.reply.send(outcome);
    }
}

impl Writer {
    /// One statement, committed by itself: `append_at` for a group of one,
    /// `append_group` for more. Either fails as a whole when a row collides
    /// with a racing writer's.
    async fn write(&self, group: &[Request]) -> Vec<Grouped> {
        let not_written = || group.iter().map(|_| Grouped::NotWritten).collect();
        let Ok(mut session) = self.db.session().await else {
            return not_written();
        };
        let columns;
        let query = match group {
            [alone] => alone.batch.bind(
                self.db
                    .query(&self.sql.append_at)
                    .bind(&alone.stream.aggregate_type)
                    .bind(&alone.stream.aggregate_id)
                    .bind(i64::try_from(alone.after).unwrap_or(i64::MAX)),
            ),
            _ => {
                columns = GroupColumns::new(
                    group
                        .iter()
                        .map(|request| (&request.stream, request.after, &*request.batch)),
                );
                columns.bind(self.db.query(&self.sql.append_group))
            }
        };
        let rows = match query.fetch_all(&mut *session).await {
            Ok(rows) => rows,
            Err(error) => {
                return match sent_write_error(error) {
                    error @ StoreError::OutcomeUnknown(_) => failed(group, &error),
                    // Nothing was written (refused by the database, a row
                    // colliding with a racing writer's, not sent): each
                    // append is written alone, which tells a conflict from a
                    // retry.
                    _ => not_written(),
                };
            }
        };
        let mut slots = Slots::new(group);
        for row in &rows {
            if slots.record(row).is_err() {
                // Stored, but not as asked: each caller's own append finds
                // its events by their ids, or reports why not.
                return not_written();
            }
        }
        if !rows.is_empty() {
            // Behind a pooler this is the COMMIT.
            if let Err(error) = session.finish().await {
                return failed(group, &sent_write_error(error));
            }
            self.notifier.appended();
        }
        (0..group.len()).map(|slot| slots.take(slot)).collect()
    }
}

/// Every append of `group` answered with `error`: the statement or its
/// commit was sent and its answer lost.
fn failed(group: &[Request], error: &StoreError) -> Vec<Grouped> {
    group
        .iter()
        .map(|_| Grouped::Failed(StoreError::OutcomeUnknown(error.to_string().into())))
        .collect()
}

/// Where each append's events landed, filled from the rows a statement
/// returned (one per inserted event, in no promised order).
struct Slots<'a> {
    group: &'a [Request],
    /// Event id to (append, index in its batch).
    places: HashMap<Uuid, (usize, usize)>,
    landed: Vec<Vec<Option<Committed>>>,
}

impl<'a> Slots<'a> {
    fn new(group: &'a [Request]) -> Self {
        let mut places = HashMap::new();
        for (slot, request) in group.iter().enumerate() {
            for (index, id) in request.batch.ids.iter().enumerate() {
                places.insert(*id, (slot, index));
            }
        }
        let landed = group
            .iter()
            .map(|request| vec![None; request.batch.ids.len()])
            .collect();
        Self {
            group,
            places,
            landed,
        }
    }

    /// Records one returned row; an error for a row that matches no event
    /// sent, or lands at another version than asked.
    fn record(&mut self, row: &sqlx::postgres::PgRow) -> Result<(), sqlx::Error> {
        let event_id: Uuid = row.try_get("event_id")?;
        let version: i64 = row.try_get("version")?;
        let position: i64 = row.try_get("position")?;
        let transaction: i64 = row.try_get("transaction")?;
        let &(slot, index) = self
            .places
            .get(&event_id)
            .ok_or_else(|| sqlx::Error::Protocol(format!("unknown event {event_id} returned")))?;
        let wanted = self.group[slot].after + 1 + index as u64;
        if version.unsigned_abs() != wanted {
            return Err(sqlx::Error::Protocol(format!(
                "event {event_id} stored at version {version}, not {wanted}"
            )));
        }
        self.landed[slot][index] = Some(Committed {
            event_id,
            version: wanted,
            position: Position::new(transaction.unsigned_abs(), position.unsigned_abs()),
            recorded_at: row.try_get("recorded_at")?,
        });
        Ok(())
    }

    /// The outcome of append `slot`: stored when all its events were.
    fn take(&mut self, slot: usize) -> Grouped {
        let events: Option<Vec<Committed>> =
            std::mem::take(&mut self.landed[slot]).into_iter().collect();
        match events {
            Some(events) if !events.is_empty() => Grouped::Stored(AppendResult {
                stream_version: self.group[slot].after + events.len() as u64,
                events,
                already_stored: false,
            }),
            _ => Grouped::NotWritten,
        }
    }
}

#[cfg(test)]
mod tests;
