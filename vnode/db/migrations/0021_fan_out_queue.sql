-- Each event written once (issue 13, docs/adr/0032). The fan-out found its work through the
-- partial index outbox_to_fan_out (WHERE fanned_out_at IS NULL) and marked each event done by
-- setting fanned_out_at. That column is in the index's predicate, so the update could not be
-- HOT: every event's row (its payload) and its three index entries were written a second time,
-- about a tenth of a transfer's WAL (docs/PERFORMANCE.md, "Issue 13 (session 8)"). The
-- queue holds only the ids still to fan out: a trigger on outbox (20_events.sql) adds each new
-- event's id, the fan-out deletes the ids it took, and the outbox row is never updated.
CREATE TABLE fan_out_queue (
    outbox_id bigint PRIMARY KEY
);
INSERT INTO fan_out_queue (outbox_id) SELECT id FROM outbox WHERE fanned_out_at IS NULL;
DROP INDEX outbox_to_fan_out;
ALTER TABLE outbox DROP COLUMN fanned_out_at;
