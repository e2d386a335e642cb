-- A channel's pending deliveries in outbox order (issue 13, docs/adr/0027). The due query
-- (vnode/events/delivery.py) walks this index from a channel's oldest pending event and stops
-- at its LIMIT; through event_deliveries_due (ordered by next_attempt_at) it read and sorted the
-- channel's whole due backlog for every batch (EXPLAIN in docs/PERFORMANCE.md, "Issue 13,
-- delivery (session 6)"). Delivered rows stay in the table; a partial index keeps them out.
CREATE INDEX event_deliveries_pending_order ON event_deliveries (channel, outbox_id)
    WHERE status = 'pending';
