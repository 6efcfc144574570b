-- Deadlines: commands scheduled for later (see cqrskit_core::deadline).
-- A runner claims a due deadline for a while (claimed_by, claimed_until),
-- executes its command once in effect, and records the outcome; a runner
-- that died leaves its claim to lapse.
CREATE TABLE deadlines (
    id              uuid         PRIMARY KEY,
    name            text         NOT NULL,
    aggregate_type  text         NOT NULL,
    aggregate_id    text         NOT NULL,
    due_at          timestamptz  NOT NULL,
    command         jsonb        NOT NULL,
    metadata        jsonb        NOT NULL DEFAULT '{}'::jsonb,
    scheduled_at    timestamptz  NOT NULL DEFAULT now(),
    claimed_by      text,
    claimed_until   timestamptz,
    cancelled_at    timestamptz,
    delivered_at    timestamptz,
    outcome         text
);

-- The pending ones, by when they fall due.
CREATE INDEX deadlines_pending_idx ON deadlines (due_at)
    WHERE delivered_at IS NULL AND cancelled_at IS NULL;
