-- The event store: events, keyed so that the database itself rejects a second
-- writer at the same stream version, and snapshots.
--
-- Tables are created unqualified: the migration runner sets search_path to the
-- store's schema, so one database can hold several stores.

CREATE TABLE events (
    -- Global sequence number, taken when the row is inserted (before commit).
    position        bigserial    NOT NULL,
    -- The writing transaction. Readers of the global log order by
    -- (transaction_id, position) and only read transactions below the oldest
    -- one still running, so a late commit can never slip behind a reader.
    transaction_id  xid8         NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid         NOT NULL,
    aggregate_type  text         NOT NULL,
    aggregate_id    text         NOT NULL,
    version         bigint       NOT NULL CHECK (version > 0),
    event_type      text         NOT NULL,
    event_version   integer      NOT NULL CHECK (event_version > 0),
    payload         jsonb        NOT NULL,
    metadata        jsonb        NOT NULL DEFAULT '{}'::jsonb,
    correlation_id  uuid         GENERATED ALWAYS AS ((metadata ->> 'correlation_id')::uuid) STORED,
    recorded_at     timestamptz  NOT NULL DEFAULT now(),
    -- Optimistic concurrency: two writers of the same version cannot both commit.
    -- Also serves loading a stream from a version.
    CONSTRAINT events_stream_version_key PRIMARY KEY (aggregate_type, aggregate_id, version),
    -- Idempotent re-appends, and looking an event up by id.
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- Tailing the whole global log from a checkpoint.
CREATE UNIQUE INDEX events_log_idx ON events (transaction_id, position);
-- Tailing the log for the event types a projection declares.
CREATE INDEX events_type_log_idx ON events (event_type, transaction_id, position);
-- Every event of one business transaction, in log order.
CREATE INDEX events_correlation_idx ON events (correlation_id, transaction_id, position)
    WHERE correlation_id IS NOT NULL;
-- Events of given types in a time range.
CREATE INDEX events_type_time_idx ON events (event_type, recorded_at);

-- Stored events are facts: schema changes happen on read (upcasting), never by
-- rewriting rows.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stored events are never rewritten (event % of %/% version %)',
        OLD.event_id, OLD.aggregate_type, OLD.aggregate_id, OLD.version
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_are_immutable
    BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();

CREATE TABLE snapshots (
    aggregate_type  text         NOT NULL,
    aggregate_id    text         NOT NULL,
    version         bigint       NOT NULL CHECK (version > 0),
    schema_version  integer      NOT NULL,
    state           jsonb        NOT NULL,
    taken_at        timestamptz  NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (aggregate_type, aggregate_id)
);
