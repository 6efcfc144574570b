-- Requests an operator makes of a running projection (`cqrs-admin rebuild`,
-- `cqrs-admin dead-letters replay`): the projector's code lives in the
-- application, so the runner that holds the lease carries them out and
-- clears them. NULL: nothing requested.
ALTER TABLE projections ADD COLUMN requested text
    CHECK (requested IN ('rebuild', 'replay-dead-letters'));
ALTER TABLE projections ADD COLUMN requested_at timestamptz;

-- How a dead letter was closed, when it was: NULL while open or when a
-- replay applied it, 'skipped' when an operator gave up on it.
ALTER TABLE dead_letters ADD COLUMN resolution text;
