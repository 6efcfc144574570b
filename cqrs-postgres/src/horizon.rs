//! How far a reader of the global log may read without ever skipping an
//! event: the *horizon*, counted only from transactions that append events.
//!
//! Events are ordered by a tag (`transaction_id`) and a sequence. A reader
//! must never move its checkpoint past a tag whose events could still
//! commit. Counting every running transaction (the oldest one of the whole
//! server, `pg_snapshot_xmin`) is safe but lets any write transaction
//! anywhere (another schema, a batch job, an idle session left in a
//! transaction) hold back every projection for as long as it runs.
//!
//! So appends *announce* themselves: each takes a shared transaction-level
//! advisory lock, the schema's *gate*, before it has a transaction id, and
//! holds it until it ends. A reader then counts, among the transactions its
//! snapshot sees running, only those that hold the gate, plus those that
//! ended between its snapshot and its look at the locks (it cannot tell what
//! they were, so it waits for them: they just ended, so it reads them on its
//! next look). The proof, case by case, for an append `A` and a reader whose
//! statement snapshot is `S`:
//!
//! - `A` ended before `S`: its events are in `S`, or it rolled back.
//! - `A` running at `S` with an id below `S`'s xmax, still holding the gate
//!   when the reader looks: counted, the horizon stays at or below its id.
//! - `A` ended between `S` and the look: counted as ended-since.
//! - `A` running at `S` but not yet holding the lock on its own id when the
//!   reader looks (PostgreSQL publishes an id, then locks it): counted, since
//!   only a transaction seen holding its id's lock without the gate is
//!   passed, and the gate is taken before the id exists.
//! - `A` given its id after `S` (or not yet): ids are handed out in
//!   increasing order, so its id is at least `S`'s xmax, at or above the
//!   horizon.
//! - `A` in a transaction that had an id *before* announcing (the caller's
//!   transaction wrote other tables first): a reader may have passed that id
//!   while `A` was not yet announced, so `A` does not tag its events with it.
//!   It appends under a savepoint and tags its events with the savepoint's
//!   own id, handed out after the announcement and so above every horizon
//!   computed before it ([`retag`]).
//!
//! A transaction that never appends is never counted once the reader sees it
//! running without the gate. Only the gate's key is shared: anything else
//! that takes the same lock is counted too, which can only delay readers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::schema_name::SchemaName;

/// The first half of the gate's advisory-lock key, shared by every schema;
/// the second half comes from the schema's name.
const GATE_CLASS: u32 = 0x6371_6b67;

/// The schema's half of the gate's key.
fn gate_key(schema: &SchemaName) -> u32 {
    let fingerprint = schema.fingerprint();
    // Folded so every bit of the hash counts; `as` keeps the low 32 bits.
    (fingerprint ^ (fingerprint >> 32)) as u32
}

/// A materialized CTE body that announces an append when it is evaluated.
/// Joined into the insert's `FROM`, it runs before the first row is
/// inserted, which is when an autocommitted statement gets its transaction
/// id.
pub(crate) fn announce(schema: &SchemaName) -> String {
    // Two int4 halves: the lock's `classid` and `objid` in `pg_locks`
    // (`objsubid` 2). Cast through int4 because the functions take signed
    // halves; the bits are what `pg_locks` shows.
    format!(
        "SELECT pg_advisory_xact_lock_shared({class}, {key})",
        class = GATE_CLASS as i32,
        key = gate_key(schema) as i32,
    )
}

/// An SQL expression (a scalar subquery) for the horizon of the statement's
/// snapshot: every event with a smaller tag is visible to the statement or
/// will never commit.
pub(crate) fn horizon(schema: &SchemaName) -> String {
    // `pg_locks` is read once (one consistent copy of the lock table; two
    // references would be two copies taken at different times), before the
    // status of any running transaction is asked, so one that released the
    // gate before the look is seen as ended. A running transaction counts
    // unless the look *positively* shows it without the gate: it holds the
    // lock on its own id and its session holds no gate. One that has
    // published its id but not yet locked it (PostgreSQL does these one
    // after the other) counts, for it may be an append that announced
    // itself a moment before. On a hot standby the primary's locks are not
    // visible, so the horizon falls back to the oldest running transaction.
    format!(
        "(WITH locks AS MATERIALIZED (
             SELECT locktype, virtualtransaction, transactionid, classid, objid, objsubid FROM pg_locks
         ), looked AS MATERIALIZED (
             SELECT
                 coalesce(array_agg(held.transactionid::text::bigint)
                     FILTER (WHERE held.virtualtransaction IN
                         (SELECT gate.virtualtransaction FROM locks gate WHERE {holds_gate})), '{{}}')
                     AS appenders,
                 coalesce(array_agg(held.transactionid::text::bigint), '{{}}') AS locked
             FROM locks held WHERE held.locktype = 'transactionid'
         )
         SELECT CASE WHEN pg_is_in_recovery() THEN pg_snapshot_xmin(pg_current_snapshot()) ELSE coalesce(
             (SELECT running FROM looked, pg_snapshot_xip(pg_current_snapshot()) AS running
              WHERE (running::text::bigint & 4294967295) = ANY (looked.appenders)
                 OR NOT (running::text::bigint & 4294967295) = ANY (looked.locked)
                 OR pg_xact_status(running) IS DISTINCT FROM 'in progress'
              ORDER BY running LIMIT 1),
             pg_snapshot_xmax(pg_current_snapshot())) END)",
        holds_gate = holds_gate(schema, "gate"),
    )
}

/// An SQL condition on the `pg_locks` row `alias`: it is the schema's gate.
pub(crate) fn holds_gate(schema: &SchemaName, alias: &str) -> String {
    format!(
        "{alias}.locktype = 'advisory' AND {alias}.objsubid = 2 \
         AND {alias}.classid = '{class}'::oid AND {alias}.objid = '{key}'::oid",
        class = GATE_CLASS,
        key = gate_key(schema),
    )
}

/// A horizon a store has already read up to, below which every event is
/// known to be final: a fact that never stops being true. The horizon
/// computed for one statement can be lower than an earlier one (a
/// transaction that ended just as it looked is counted, to be safe), so
/// without the floor an event once read could transiently not be read again
/// after it; with it, what a store instance has read stays readable.
#[derive(Debug, Default)]
pub(crate) struct Floor(AtomicU64);

impl Floor {
    /// The floor, as the `$7` of the log reads.
    pub(crate) fn get(&self) -> i64 {
        i64::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    /// An event with tag `tag` was read: every tag up to it is final (tags
    /// are unique to one transaction or savepoint, whose events commit
    /// together).
    pub(crate) fn passed(&self, tag: u64) {
        self.0.fetch_max(tag.saturating_add(1), Ordering::Relaxed);
    }
}

/// Whether the connection's transaction already has an id: an append in it
/// must then tag its events with a fresh one ([`retag`]).
// language=SQL
pub(crate) const HAS_TRANSACTION_ID: &str = "SELECT pg_current_xact_id_if_assigned() IS NOT NULL";

/// Gives the events with the ids `$1` the id of the savepoint that inserted
/// them (their `xmin`, widened to 64 bits with the epoch of the enclosing
/// transaction's id), and returns each event's id, position and tag.
pub(crate) fn retag(schema: &SchemaName) -> String {
    let events = format!("{}.events", schema.quoted());
    // The savepoint's id came after the transaction's, so it is in the same
    // epoch unless its low half wrapped around.
    // language=SQL
    format!(
        "WITH ids AS MATERIALIZED (
             SELECT xmin::text::bigint AS own, pg_current_xact_id()::text::bigint AS top
             FROM {events} WHERE event_id = $1[1]
         )
         UPDATE {events} SET transaction_id =
             ((((ids.top >> 32) + CASE WHEN ids.own < (ids.top & 4294967295) THEN 1 ELSE 0 END) << 32)
              | ids.own)::text::xid8
         FROM ids
         WHERE event_id = ANY($1)
         RETURNING event_id, position, transaction_id::text::bigint AS transaction"
    )
}
