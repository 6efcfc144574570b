//! What an operator asks of a running system, without the application's
//! code: each projection's state, its parked events, and requests its
//! runner carries out (a rebuild, a replay of dead letters). The
//! `cqrs-admin` command line is built on this.
//!
//! A partitioned projection has a row per partition (`<name>[i/n]`); its
//! own name stands for all of them: its dead letters are every
//! partition's, resuming it resumes every partition, a replay is asked of
//! every partition's runner.

mod consumer_partitions;
mod consumers;
mod dead_letters;
mod state;

pub use self::consumer_partitions::ConsumerPartitionInfo;
pub use self::consumers::{ConsumerDeadLetter, ConsumerInfo};
pub use self::state::ProjectionState;

use chrono::{DateTime, Utc};
use cqrskit_core::Position;
use sqlx::{PgConnection, Row};

use crate::partition::Partition;
use crate::projection::Request;
use crate::projection::dead_letter::DeadLetterTable;
use crate::projection::pending::{self, Reads};
use crate::projection::projection_row::ProjectionRow;
use crate::{Error, PostgresEventStore};

/// A projection as its row and the log show it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProjectionInfo {
    /// The projection's name (a partition's is `<name>[i/n]`).
    pub name: String,
    /// The last event it applied.
    pub checkpoint: Position,
    /// Events of its types after its checkpoint.
    pub lag_events: u64,
    /// The age of the oldest of those, in seconds.
    pub lag_seconds: Option<f64>,
    /// The runner that holds or last held the lease.
    pub owner: Option<String>,
    /// When that lease runs out (or ran out).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether the lease is held now: a runner is running it.
    pub running: bool,
    /// When the failure policy stopped it at a poison event, if it did.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Why it stopped.
    pub stop_reason: Option<String>,
    /// Its dead letters still open.
    pub open_dead_letters: u64,
    /// An operator's request its runner has not carried out yet.
    pub requested: Option<Request>,
    /// Why the runner's last attempt at that request failed, if one did
    /// (it tries again at every poll until the request is withdrawn).
    pub request_error: Option<String>,
    /// How many attempts at that request failed.
    pub request_failures: u32,
    /// When its row last changed.
    pub updated_at: DateTime<Utc>,
}

/// Operations on a store's projections, for operators.
#[derive(Clone, Debug)]
pub struct Admin {
    store: PostgresEventStore,
    projections: String,
    dead_letters: String,
    events: String,
}

impl Admin {
    /// The store's dead letters.
    fn dead_letter_table(&self) -> DeadLetterTable<'_> {
        DeadLetterTable {
            db: self.store.database(),
            table: &self.dead_letters,
        }
    }

    /// Operations on `store`'s schema.
    pub fn new(store: PostgresEventStore) -> Self {
        Self {
            projections: store.table("projections"),
            dead_letters: store.table("dead_letters"),
            events: store.table("events"),
            store,
        }
    }

    /// The store.
    pub fn store(&self) -> &PostgresEventStore {
        &self.store
    }

    /// Every projection that has run in the schema, by name.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn projections(&self) -> Result<Vec<ProjectionInfo>, Error> {
        let names = self.names(None).await?;
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            if let Some(info) = self.projection(&name).await? {
                infos.push(info);
            }
        }
        Ok(infos)
    }

    /// One projection; `None` when it never ran in the schema.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn projection(&self, name: &str) -> Result<Option<ProjectionInfo>, Error> {
        let database = self.store.database();
        let mut session = database.session().await?;
        // language=SQL
        let Some(row) = database
            .query(&format!(
                "SELECT p.checkpoint_transaction, p.checkpoint_sequence, p.owner, p.lease_expires_at,
                        coalesce(p.lease_expires_at > now(), false) AS running, p.stopped_at,
                        p.stop_reason, p.event_types, p.requested, p.request_error,
                        p.request_failures, p.updated_at,
                        (SELECT count(*) FROM {} d
                          WHERE d.projection = p.name AND d.resolved_at IS NULL) AS open_dead_letters
                 FROM {} p WHERE p.name = $1",
                self.dead_letters, self.projections
            ))
            .bind(name)
            .fetch_optional(&mut *session)
            .await?
        else {
            session.finish().await?;
            return Ok(None);
        };
        let checkpoint = Position::new(
            u64::try_from(row.try_get::<i64, _>("checkpoint_transaction")?).unwrap_or(0),
            u64::try_from(row.try_get::<i64, _>("checkpoint_sequence")?).unwrap_or(0),
        );
        let types: Option<Vec<String>> = row.try_get("event_types")?;
        let lag = self
            .pending(&mut session, name, checkpoint, types.as_deref())
            .await?;
        let requested: Option<String> = row.try_get("requested")?;
        let info = ProjectionInfo {
            name: name.to_owned(),
            checkpoint,
            lag_events: lag.0,
            lag_seconds: lag.1,
            owner: row.try_get("owner")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            running: row.try_get("running")?,
            stopped_at: row.try_get("stopped_at")?,
            stop_reason: row.try_get("stop_reason")?,
            open_dead_letters: u64::try_from(row.try_get::<i64, _>("open_dead_letters")?)
                .unwrap_or(0),
            requested: requested.as_deref().and_then(Request::parse),
            request_error: row.try_get("request_error")?,
            request_failures: u32::try_from(row.try_get::<i32, _>("request_failures")?)
                .unwrap_or(0),
            updated_at: row.try_get("updated_at")?,
        };
        session.finish().await?;
        Ok(Some(info))
    }

    /// How many events of the whole log `projection` reads (its types and
    /// slices): what a rebuild of it replays. Counts them all, so it is
    /// asked once per rebuild, not with every look at the projection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProjection`], or the database's.
    pub async fn events_read_by(&self, projection: &str) -> Result<u64, Error> {
        let database = self.store.database();
        let mut session = database.session().await?;
        // language=SQL
        let row = database
            .query(&format!(
                "SELECT event_types FROM {} WHERE name = $1",
                self.projections
            ))
            .bind(projection)
            .fetch_optional(&mut *session)
            .await?
            .ok_or_else(|| Error::UnknownProjection(projection.to_owned()))?;
        let types: Option<Vec<String>> = row.try_get("event_types")?;
        let (events, _) = self
            .pending(&mut session, projection, Position::START, types.as_deref())
            .await?;
        session.finish().await?;
        Ok(events)
    }

    /// The events `name` reads (`types`, all when `None`; the slices of the
    /// partition it names) after `after`, and the age of the oldest.
    async fn pending(
        &self,
        session: &mut sqlx::PgConnection,
        name: &str,
        after: Position,
        types: Option<&[String]>,
    ) -> Result<(u64, Option<f64>), Error> {
        let slices = partition_of(name).map(|partition| {
            let bound = |slice: u16| i16::try_from(slice).unwrap_or(i16::MAX);
            let range = partition.slices();
            (bound(*range.start()), bound(*range.end()))
        });
        let reads = Reads { types, slices };
        let pending = pending::count(
            self.store.database(),
            session,
            &self.events,
            after,
            reads,
            None,
        )
        .await?;
        Ok((pending.events, pending.behind))
    }

    /// Asks the runner that holds `projection`'s lease to carry out
    /// `request` (it looks every poll interval); a request already waiting
    /// is replaced. With no runner running, it waits for the next one.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProjection`]; [`Error::PartitionRebuild`] for a
    /// rebuild of one partition.
    pub async fn request(&self, projection: &str, request: Request) -> Result<(), Error> {
        if request == Request::Rebuild && partition_of(projection).is_some() {
            return Err(Error::PartitionRebuild(projection.to_owned()));
        }
        let rows = self.rows_of(projection).await?;
        let partitioned = rows.len() > 1 || rows.first().is_some_and(|row| row != projection);
        if request == Request::Rebuild && partitioned {
            return Err(Error::PartitionRebuild(projection.to_owned()));
        }
        for row_name in &rows {
            self.on_row(row_name, async |row, session| {
                row.request(session, request.as_str()).await
            })
            .await?;
        }
        Ok(())
    }

    /// Withdraws the request waiting on `projection`, if any; returns it.
    /// A request its runner has begun to carry out is past withdrawing (a
    /// rebuild's reset commits with the request's removal).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProjection`], or the database's.
    pub async fn withdraw_request(&self, projection: &str) -> Result<Option<Request>, Error> {
        let mut withdrawn = None;
        for row_name in self.rows_of(projection).await? {
            let before = self
                .on_row(&row_name, async |row, session| {
                    row.withdraw_request(session).await
                })
                .await?;
            withdrawn = withdrawn.or(before.flatten().as_deref().and_then(Request::parse));
        }
        Ok(withdrawn)
    }

    /// Lets a stopped projection go on: its runner retries the event it
    /// stopped at.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProjection`], or the database's.
    pub async fn resume(&self, projection: &str) -> Result<(), Error> {
        for row_name in self.rows_of(projection).await? {
            self.on_row(&row_name, async |row, session| {
                row.clear_stop(session).await
            })
            .await?;
        }
        Ok(())
    }

    /// The rows `projection` names: its own, or, for a partitioned
    /// projection named without a partition, each partition's, in order.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProjection`] when there is none; the database's.
    pub async fn rows_of(&self, projection: &str) -> Result<Vec<String>, Error> {
        // Not LIKE: a projection's name may hold `_` and `%`.
        let names = self
            .names_where(
                "name = $1 OR left(name, length($1) + 1) = $1 || '['",
                "name = $1 DESC, name",
                Some(projection),
            )
            .await?;
        let rows: Vec<String> = match names.first() {
            Some(first) if first == projection => vec![first.clone()],
            _ => names
                .into_iter()
                .filter(|name| partition_of(name).is_some())
                .collect(),
        };
        if rows.is_empty() {
            return Err(Error::UnknownProjection(projection.to_owned()));
        }
        Ok(rows)
    }

    /// Runs `statement` on `projection`'s row, on a session of its own.
    async fn on_row<T>(
        &self,
        projection: &str,
        statement: impl AsyncFnOnce(ProjectionRow<'_>, &mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, Error> {
        let database = self.store.database();
        let row = ProjectionRow {
            db: database,
            table: &self.projections,
            name: projection,
        };
        let mut session = database.session().await?;
        let done = statement(row, &mut session).await?;
        session.finish().await?;
        Ok(done)
    }

    /// The names of the projections (or of those named `only`).
    async fn names(&self, only: Option<&str>) -> Result<Vec<String>, Error> {
        self.names_where("$1::text IS NULL OR name = $1", "name", only)
            .await
    }

    /// The names of the projections whose rows meet `condition` (which may
    /// bind `value` as `$1`), in `order`.
    async fn names_where(
        &self,
        condition: &str,
        order: &str,
        value: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let database = self.store.database();
        let mut session = database.session().await?;
        // language=SQL
        let names = database
            .query(&format!(
                "SELECT name FROM {} WHERE {condition} ORDER BY {order}",
                self.projections
            ))
            .bind(value)
            .fetch_all(&mut *session)
            .await?
            .iter()
            .map(|row| row.try_get("name"))
            .collect::<Result<_, _>>()?;
        session.finish().await?;
        Ok(names)
    }
}

/// The partition a row name `<projection>[i/n]` stands for.
fn partition_of(name: &str) -> Option<Partition> {
    let inner = name.strip_suffix(']')?;
    let (_, part) = inner.rsplit_once('[')?;
    let (index, count) = part.split_once('/')?;
    Partition::new(index.parse().ok()?, count.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn partition_row_names_are_recognised() {
        let partition = partition_of("ledger[2/8]").expect("a partition");
        assert_eq!((partition.index(), partition.count()), (2, 8));
        assert!(partition_of("ledger").is_none());
        assert!(partition_of("ledger[8/8]").is_none());
        assert!(partition_of("odd[name]").is_none());
    }
}
