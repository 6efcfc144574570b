-- What each projection subscribes to: the event types its projector
-- declared when its checkpoint last moved. A runner whose projector declares
-- other types (a new version during a rolling deploy, an old one coming
-- back) compares them with this before applying anything, so a checkpoint
-- never silently passes events the projection should have seen.
-- NULL: recorded before this migration (or not yet).
ALTER TABLE projections ADD COLUMN event_types text[];
