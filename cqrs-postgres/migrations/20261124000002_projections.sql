-- Projections: their checkpoints and leases, the events they parked, and the
-- notification that wakes them when events are appended.

CREATE TABLE projections (
    name                    text         PRIMARY KEY,
    -- The checkpoint: the log position of the last event processed.
    checkpoint_transaction  bigint       NOT NULL DEFAULT 0,
    checkpoint_sequence     bigint       NOT NULL DEFAULT 0,
    -- The lease: one active runner per projection across processes. Each
    -- takeover increments the fencing token, so a runner that lost its lease
    -- can no longer move the checkpoint even if it still believes it holds it.
    owner                   text,
    lease_expires_at        timestamptz,
    fencing_token           bigint       NOT NULL DEFAULT 0,
    -- Set when the failure policy stopped the projection at a poison event.
    stopped_at              timestamptz,
    stop_reason             text,
    updated_at              timestamptz  NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id              bigserial    PRIMARY KEY,
    projection      text         NOT NULL,
    event_id        uuid         NOT NULL,
    transaction_id  bigint       NOT NULL,
    sequence        bigint       NOT NULL,
    aggregate_type  text         NOT NULL,
    aggregate_id    text         NOT NULL,
    version         bigint       NOT NULL,
    event_type      text         NOT NULL,
    error           text         NOT NULL,
    attempts        integer      NOT NULL,
    parked_at       timestamptz  NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    CONSTRAINT dead_letters_projection_event_key UNIQUE (projection, event_id)
);

-- Listing a projection's parked events that are not resolved yet.
CREATE INDEX dead_letters_open_idx ON dead_letters (projection, id) WHERE resolved_at IS NULL;

-- One notification per appending statement, on channel '<schema>.events',
-- delivered when the append commits. Readers that miss one (a dropped
-- listener connection) still poll, so a lost notification only delays them.
CREATE FUNCTION notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();
