-- An operator's request the runner tried and could not carry out (a reset
-- the database refused, say): the last error and how many attempts failed,
-- so that `cqrs-admin` shows why a request seems to wait forever. Cleared
-- with the request, and when a new one is recorded. Runners of the version
-- before leave them alone.
ALTER TABLE projections ADD COLUMN request_error text;
ALTER TABLE projections ADD COLUMN request_failures integer NOT NULL DEFAULT 0;
