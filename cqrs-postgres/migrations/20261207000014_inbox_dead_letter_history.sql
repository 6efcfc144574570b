-- A consumer's dead letters keep their history: a replayed or skipped one
-- is closed, not deleted, and an operator asks the running consumer to
-- replay one (its handler lives in the application) by marking it.
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
-- 'replayed' or 'skipped' once closed.
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS resolution text;
-- How many replays were tried, and why the last one failed.
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0;
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS replay_error text;
-- Set by an operator; the running consumer replays it and clears it.
ALTER TABLE inbox_dead_letters ADD COLUMN IF NOT EXISTS replay_requested_at timestamptz;
CREATE INDEX IF NOT EXISTS inbox_dead_letters_requested
    ON inbox_dead_letters (consumer) WHERE replay_requested_at IS NOT NULL;
