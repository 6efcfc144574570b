-- Appends announce themselves to readers of the global log (see the store's
-- `horizon` module). An append in a transaction that already had an id when
-- it announced must not tag its events with that id, which readers may have
-- passed: it inserts them under a savepoint and re-tags them, before they
-- commit, with the savepoint's own id. That one change is the only rewrite
-- allowed, by the very transaction that inserted the rows, upwards only,
-- with every other column unchanged; stored events stay facts.
CREATE OR REPLACE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.transaction_id = pg_current_xact_id()
       AND NEW.transaction_id > OLD.transaction_id
       AND (NEW.position, NEW.event_id, NEW.aggregate_type, NEW.aggregate_id, NEW.version,
            NEW.event_type, NEW.event_version, NEW.payload, NEW.metadata, NEW.recorded_at)
           IS NOT DISTINCT FROM
           (OLD.position, OLD.event_id, OLD.aggregate_type, OLD.aggregate_id, OLD.version,
            OLD.event_type, OLD.event_version, OLD.payload, OLD.metadata, OLD.recorded_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'stored events are never rewritten (event % of %/% version %)',
        OLD.event_id, OLD.aggregate_type, OLD.aggregate_id, OLD.version
        USING ERRCODE = 'restrict_violation';
END
$$;
