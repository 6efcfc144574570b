//! Every SQL statement the store runs, rendered once for its schema.

use crate::horizon;
use crate::schema_name::SchemaName;

/// The columns every event query returns, in the order `row::event` reads them.
const EVENT_COLUMNS: &str = "position, transaction_id::text::bigint AS transaction, event_id, \
     aggregate_type, aggregate_id, version, event_type, event_version, payload::text AS payload, \
     metadata::text AS metadata, recorded_at";

/// [`EVENT_COLUMNS`] with empty metadata in place of the stored one: for
/// readers that do not use it (see `Projector::reads_metadata`).
const EVENT_COLUMNS_WITHOUT_METADATA: &str = "position, transaction_id::text::bigint AS transaction, \
     event_id, aggregate_type, aggregate_id, version, event_type, event_version, \
     payload::text AS payload, '{}'::text AS metadata, recorded_at";

/// The names of [`EVENT_COLUMNS`], in the same order.
const EVENT_COLUMN_NAMES: &str = "position, transaction, event_id, aggregate_type, aggregate_id, \
     version, event_type, event_version, payload, metadata, recorded_at";

/// Cuts a batch of event rows (a statement selecting [`EVENT_COLUMNS`] and
/// the raw `transaction_id`, in log order) where its payloads pass `$6`
/// bytes, keeping at least the first row. Ordered by the raw columns, the
/// batch's own order serves the sum and the result: ordering by the
/// converted `transaction` would sort the batch twice more.
fn sized_batch(batch: &str) -> String {
    // language=SQL
    format!(
        "SELECT {EVENT_COLUMN_NAMES} FROM (
             SELECT *, sum(octet_length(payload)) OVER (ORDER BY transaction_id, position) AS bytes_through
             FROM ({batch}) AS batch
         ) AS sized
         WHERE bytes_through - octet_length(payload) < $6
         ORDER BY transaction_id, position"
    )
}

/// Every statement the store runs, with its tables qualified by the schema.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) append: String,
    pub(crate) append_at: String,
    pub(crate) append_at_with_snapshot: String,
    pub(crate) append_group: String,
    pub(crate) stream_version: String,
    pub(crate) read_stream: String,
    pub(crate) replay: String,
    pub(crate) read_log: String,
    pub(crate) read_log_filtered: String,
    /// `read_log` without the metadata.
    pub(crate) read_log_lean: String,
    /// `read_log_filtered` without the metadata.
    pub(crate) read_log_filtered_lean: String,
    pub(crate) events_by_id: String,
    pub(crate) events_by_correlation: String,
    pub(crate) events_in_time_range: String,
    pub(crate) events_in_time_range_all_types: String,
    pub(crate) load_snapshot: String,
    pub(crate) save_snapshot: String,
    pub(crate) oldest_append: String,
    pub(crate) retag: String,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let events = format!("{}.events", schema.quoted());
        let snapshots = format!("{}.snapshots", schema.quoted());
        let announce = horizon::announce(schema);
        // `$7`: the floor (see `horizon::Floor`). It holds for a snapshot
        // taken after the read that raised it, which only READ COMMITTED
        // guarantees (a REPEATABLE READ transaction may have an older one).
        let horizon = format!(
            "greatest({}, (CASE WHEN current_setting('transaction_isolation') = 'read committed' \
             THEN $7::bigint ELSE 0 END)::text::xid8)",
            horizon::horizon(schema)
        );
        // Gap-safe: only events below the horizon (see `horizon`), which
        // can no longer change, are read. At most `$5` events, and no more
        // after the batch's payloads reach `$6` bytes (the first is always
        // read), so a runner's memory stays bounded however large single
        // events are. `columns`: with the metadata or without.
        let read_log = |columns: &str| {
            // language=SQL
            sized_batch(&format!(
                "SELECT {columns}, transaction_id FROM {events}
                 WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)
                   AND transaction_id < {horizon}
                   AND ($4::text[] IS NULL OR aggregate_type = ANY($4))
                   AND ($8::smallint IS NULL OR slice BETWEEN $8 AND $9)
                 ORDER BY transaction_id, position LIMIT $5"
            ))
        };
        // One ordered index scan per wanted type (each stops after `limit`
        // rows), merged: a projection far behind the head never sorts the
        // rest of the log to read one batch. A type named twice is scanned
        // once, or its events would come twice.
        let read_log_filtered = |columns: &str| {
            // language=SQL
            sized_batch(&format!(
                "SELECT {columns}, transaction_id
                 FROM (SELECT DISTINCT unnest($3::text[])) AS wanted(type_name)
                 CROSS JOIN LATERAL (
                     SELECT * FROM {events} candidate
                     WHERE candidate.event_type = wanted.type_name
                       AND (candidate.transaction_id, candidate.position) > ($1::bigint::text::xid8, $2)
                       AND candidate.transaction_id < {horizon}
                       AND ($4::text[] IS NULL OR candidate.aggregate_type = ANY($4))
                       AND ($8::smallint IS NULL OR candidate.slice BETWEEN $8 AND $9)
                     ORDER BY candidate.transaction_id, candidate.position
                     LIMIT $5
                 ) AS e
                 ORDER BY transaction_id, position LIMIT $5"
            ))
        };
        // The insert behind `append_at`: when the writer knows the stream's
        // version (what a command pipeline always does), no join, only one
        // backward probe of the primary key for the stream's last version
        // and the insert. Comparing the last version, not just probing that
        // `$3` exists, keeps a stream with a hole (a deleted row) from being
        // written into the hole. A stream at another version inserts no
        // row; a writer that committed `$3 + 1` meanwhile makes the insert
        // fail on the primary key; the store reports both as a conflict.
        // Measured under 20 writers: 0.046 ms of server time per
        // single-event append against 0.079 ms for `append`.
        // language=SQL
        let insert_after = format!(
            "INSERT INTO {events}
                 (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata,
                  correlation_id, slice)
             SELECT e.event_id, $1, $2, $3 + e.ordinal, e.event_type, e.event_version,
                    e.payload::jsonb, e.metadata::jsonb, e.correlation_id, $10
             FROM announced, unnest($4::uuid[], $5::text[], $6::int[], $7::text[], $8::text[], $9::uuid[])
                      WITH ORDINALITY AS e(event_id, event_type, event_version, payload, metadata, correlation_id, ordinal)
             WHERE coalesce((
                 SELECT max(version) FROM {events} WHERE aggregate_type = $1 AND aggregate_id = $2
             ), 0) = $3
             RETURNING version, position, transaction_id::text::bigint AS transaction, recorded_at, event_id"
        );
        // A snapshot never replaces a newer one.
        // language=SQL
        let keep_newest_snapshot = format!(
            "ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
             SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
                 state = EXCLUDED.state, taken_at = EXCLUDED.taken_at
             WHERE {snapshots}.version <= EXCLUDED.version"
        );
        Self {
            // One round trip per append: read the stream's version, check the
            // expectation, announce the append (see `horizon`), insert the
            // batch. A
            // racing writer that inserts the same version first makes this
            // statement fail on the primary key, which the store reports as a
            // conflict. Returns one row per inserted event, or one row of nulls
            // (with the stream's version) when nothing was inserted.
            // language=SQL
            append: format!(
                "WITH current AS (
                     SELECT coalesce(max(version), 0) AS version
                     FROM {events} WHERE aggregate_type = $1 AND aggregate_id = $2
                 ), announced AS MATERIALIZED ({announce}), inserted AS (
                     INSERT INTO {events}
                         (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata,
                          correlation_id, slice)
                     SELECT e.event_id, $1, $2, current.version + e.ordinal, e.event_type, e.event_version,
                            e.payload::jsonb, e.metadata::jsonb, e.correlation_id, $11
                     FROM current, announced,
                          unnest($5::uuid[], $6::text[], $7::int[], $8::text[], $9::text[], $10::uuid[])
                              WITH ORDINALITY AS e(event_id, event_type, event_version, payload, metadata, correlation_id, ordinal)
                     WHERE current.version BETWEEN $3 AND $4
                     RETURNING event_id, version, position, transaction_id::text::bigint AS transaction, recorded_at
                 )
                 SELECT current.version AS current_version,
                        inserted.event_id, inserted.version, inserted.position, inserted.transaction,
                        inserted.recorded_at
                 FROM current LEFT JOIN inserted ON true
                 ORDER BY inserted.version"
            ),
            // The append when the writer knows the stream's version (what a
            // command pipeline always does): no join, only one backward probe
            // of the primary key for the stream's last version and the
            // insert. Comparing the last version, not just probing that `$3`
            // exists, keeps a stream with a hole (a deleted row) from being
            // written into the hole. A stream at another version inserts no
            // row; a writer that committed `$3 + 1` meanwhile makes the insert
            // fail on the primary key; the store reports both as a conflict.
            // Measured under 20 writers: 0.046 ms of server time per
            // single-event append against 0.079 ms for `append`.
            // language=SQL
            append_at: format!("WITH announced AS MATERIALIZED ({announce}) {insert_after}"),
            // `append_at` that also saves the aggregate's state after the
            // batch (`$11` its version, `$12` its schema version, `$13` the
            // state, `$14` when taken) in the same statement and commit:
            // only when the batch was inserted and ends at that version.
            // language=SQL
            append_at_with_snapshot: format!(
                "WITH announced AS MATERIALIZED ({announce}), inserted AS ({insert_after}), saved AS (
                     INSERT INTO {snapshots} (aggregate_type, aggregate_id, version, schema_version, state, taken_at)
                     SELECT $1, $2, $11, $12, $13::jsonb, $14
                     WHERE (SELECT max(version) FROM inserted) = $11
                     {keep_newest_snapshot}
                 )
                 SELECT version, position, transaction, recorded_at FROM inserted"
            ),
            // Appends of several streams at once (group commit), in one
            // statement that commits by itself: `$1` names each event's
            // append, `$4` the version it takes. An append is inserted when
            // its stream is at the version before its first event, as in
            // `append_at`; one whose stream moved on inserts nothing and
            // the others go on. A row colliding with a racing writer's (a
            // version or an event id taken since) fails the whole
            // statement, so no append is ever partly written; each is then
            // written alone. Events are inserted in append and version
            // order, so positions follow versions within each stream.
            // language=SQL
            append_group: format!(
                "WITH announced AS MATERIALIZED ({announce}), batch AS (
                     SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::bigint[], $5::uuid[],
                                          $6::text[], $7::int[], $8::text[], $9::text[], $10::uuid[],
                                          $11::smallint[])
                         AS b(slot, aggregate_type, aggregate_id, version, event_id, event_type,
                              event_version, payload, metadata, correlation_id, slice)
                 ), ready AS (
                     SELECT head.slot FROM (
                         SELECT slot, aggregate_type, aggregate_id, min(version) - 1 AS after
                         FROM batch GROUP BY slot, aggregate_type, aggregate_id
                     ) AS head
                     WHERE coalesce((
                         SELECT max(version) FROM {events} e
                         WHERE e.aggregate_type = head.aggregate_type AND e.aggregate_id = head.aggregate_id
                     ), 0) = head.after
                 )
                 INSERT INTO {events}
                     (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata,
                      correlation_id, slice)
                 SELECT b.event_id, b.aggregate_type, b.aggregate_id, b.version, b.event_type, b.event_version,
                        b.payload::jsonb, b.metadata::jsonb, b.correlation_id, b.slice
                 FROM announced, batch b
                 WHERE b.slot IN (SELECT slot FROM ready)
                 ORDER BY b.slot, b.version
                 RETURNING event_id, version, position, transaction_id::text::bigint AS transaction, recorded_at"
            ),
            // language=SQL
            stream_version: format!(
                "SELECT coalesce(max(version), 0) FROM {events} WHERE aggregate_type = $1 AND aggregate_id = $2"
            ),
            // language=SQL
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {events}
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3
                 ORDER BY version LIMIT $4"
            ),
            // Rebuilding an aggregate in one round trip: its snapshot (when
            // of the wanted schema version; a row with a null event_type),
            // then the events from the snapshot's own version on, only the
            // columns replay needs. The event at the snapshot's version is
            // the reader's proof that the stream has it (a snapshot ahead of
            // its stream is ignored); checking that here with a probe cost
            // 0.5 ms a load (a plan PostgreSQL kept re-planning). Each
            // branch is read in order and the snapshot's first; the reader
            // refuses any other order rather than trusting it.
            // language=SQL
            replay: format!(
                "WITH snapshot AS MATERIALIZED (
                     SELECT version, schema_version, state, taken_at FROM {snapshots}
                     WHERE aggregate_type = $1 AND aggregate_id = $2
                       AND schema_version = $3 AND version <= $4

                 )
                 SELECT version, NULL::text AS event_type, schema_version AS event_version,
                        state::text AS payload, taken_at
                 FROM snapshot
                 UNION ALL
                 (SELECT version, event_type, event_version, payload::text, NULL::timestamptz
                  FROM {events}
                  WHERE aggregate_type = $1 AND aggregate_id = $2
                    AND version >= coalesce((SELECT version FROM snapshot), 0) AND version <= $4
                  ORDER BY version)"
            ),
            read_log: read_log(EVENT_COLUMNS),
            read_log_filtered: read_log_filtered(EVENT_COLUMNS),
            read_log_lean: read_log(EVENT_COLUMNS_WITHOUT_METADATA),
            read_log_filtered_lean: read_log_filtered(EVENT_COLUMNS_WITHOUT_METADATA),
            // language=SQL
            events_by_id: format!("SELECT {EVENT_COLUMNS} FROM {events} WHERE event_id = ANY($1)"),
            // language=SQL
            events_by_correlation: format!(
                "SELECT {EVENT_COLUMNS} FROM {events} WHERE correlation_id = $1
                 ORDER BY transaction_id, position LIMIT $2"
            ),
            // language=SQL
            events_in_time_range: format!(
                "SELECT {EVENT_COLUMNS} FROM {events}
                 WHERE event_type = ANY($1) AND recorded_at >= $2 AND recorded_at < $3
                   AND ($4::text[] IS NULL OR aggregate_type = ANY($4))
                 ORDER BY recorded_at, transaction_id, position LIMIT $5"
            ),
            // language=SQL
            events_in_time_range_all_types: format!(
                "SELECT {EVENT_COLUMNS} FROM {events}
                 WHERE recorded_at >= $1 AND recorded_at < $2
                   AND ($3::text[] IS NULL OR aggregate_type = ANY($3))
                 ORDER BY recorded_at, transaction_id, position LIMIT $4"
            ),
            // language=SQL
            load_snapshot: format!(
                "SELECT version, schema_version, state::text AS state, taken_at FROM {snapshots}
                 WHERE aggregate_type = $1 AND aggregate_id = $2"
            ),
            // language=SQL
            save_snapshot: format!(
                "INSERT INTO {snapshots} (aggregate_type, aggregate_id, version, schema_version, state, taken_at)
                 VALUES ($1, $2, $3, $4, $5::jsonb, $6)
                 {keep_newest_snapshot}"
            ),
            // The oldest transaction holding the schema's gate: an append
            // still running, which readers wait for.
            // language=SQL
            oldest_append: format!(
                "SELECT pid, backend_xid::text::bigint AS xid, xact_start, state,
                        coalesce(application_name, '') AS application_name,
                        left(coalesce(query, ''), 200) AS query
                 FROM pg_stat_activity
                 WHERE backend_xid IS NOT NULL
                   AND pid IN (SELECT gate.pid FROM pg_locks gate WHERE {holds_gate})
                 ORDER BY age(backend_xid) DESC LIMIT 1",
                holds_gate = horizon::holds_gate(schema, "gate"),
            ),
            retag: horizon::retag(schema),
        }
    }
}
