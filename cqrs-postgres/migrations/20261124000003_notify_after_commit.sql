-- Appends no longer notify from inside their transaction: a NOTIFY in the
-- appending transaction serializes the commits of every concurrent writer
-- (PostgreSQL queues notifications under one lock held through commit),
-- which halved concurrent append throughput. The store now sends one
-- coalesced notification right after its appends commit.
DROP TRIGGER events_appended ON events;
DROP FUNCTION notify_events_appended();
