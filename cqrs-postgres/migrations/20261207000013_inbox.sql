-- The inbox of message consumers (the NATS consumer's, or any broker's):
-- which messages each consumer processed, recorded in the transaction of the
-- handler's writes, so that a redelivery is recognised. And the messages a
-- consumer gave up on (dead letters), to inspect and replay.
--
-- Earlier versions had the NATS consumer create `nats_inbox` and
-- `nats_dead_letters` at run time; those are taken over (renamed) and
-- brought to the shape below.
DO $$
BEGIN
    IF to_regclass('nats_inbox') IS NOT NULL AND to_regclass('inbox') IS NULL THEN
        ALTER TABLE nats_inbox RENAME TO inbox;
    END IF;
    IF to_regclass('nats_dead_letters') IS NOT NULL
       AND to_regclass('inbox_dead_letters') IS NULL THEN
        ALTER TABLE nats_dead_letters RENAME TO inbox_dead_letters;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS inbox (
    consumer text NOT NULL,
    -- The message's source (a CloudEvent's `source`) and id: its identity.
    source text NOT NULL DEFAULT '',
    message_id text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, message_id)
);

CREATE TABLE IF NOT EXISTS inbox_dead_letters (
    consumer text NOT NULL,
    source text NOT NULL DEFAULT '',
    message_id text NOT NULL,
    subject text NOT NULL,
    -- {"name": ["value", ...], ...}
    headers jsonb NOT NULL,
    body bytea NOT NULL,
    reason text NOT NULL,
    deliveries bigint NOT NULL,
    -- Why the copy to the dead-letter subject could not be published.
    publish_error text,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, message_id)
);

-- Tables taken over from the oldest versions keyed a message by its id
-- alone and had no source (nor, for dead letters, a publish error).
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS publish_error text;
DO $$
DECLARE
    keyed regclass;
    old_key name;
BEGIN
    FOREACH keyed IN ARRAY ARRAY['inbox'::regclass, 'inbox_dead_letters'::regclass] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE i.indrelid = keyed AND i.indisprimary AND a.attname = 'source'
        ) THEN
            SELECT conname INTO old_key FROM pg_constraint
            WHERE conrelid = keyed AND contype = 'p';
            IF old_key IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', keyed, old_key);
            END IF;
            EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (consumer, source, message_id)', keyed);
        END IF;
    END LOOP;
END $$;
