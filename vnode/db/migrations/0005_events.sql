-- Event delivery: the outbox fans out to channels (Redis Streams, each webhook endpoint), and
-- each channel delivers a user's events in order, at least once, surviving crashes.

-- Node-wide events (node.locked / node.unlocked) belong to user 0, with their own sequence.
ALTER TABLE outbox ADD CONSTRAINT outbox_user_id_check CHECK (user_id >= 0);
ALTER TABLE outbox ADD COLUMN fanned_out_at timestamptz;
CREATE INDEX outbox_to_fan_out ON outbox (id) WHERE fanned_out_at IS NULL;
CREATE INDEX outbox_user_seq ON outbox (user_id, user_seq);
DROP INDEX outbox_undelivered;
ALTER TABLE outbox DROP COLUMN delivered_at;

CREATE SEQUENCE node_event_seq;

-- The node's state as last seen by any vnode process: a change is announced once.
CREATE TABLE node_state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    state       text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION vnode_node_state_changed(p_state text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_previous text;
BEGIN
    INSERT INTO node_state (state) VALUES (p_state) ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        RETURN false;  -- first sighting: nothing changed
    END IF;
    SELECT state INTO v_previous FROM node_state FOR UPDATE;
    IF v_previous = p_state THEN
        RETURN false;
    END IF;
    UPDATE node_state SET state = p_state, changed_at = now();
    IF p_state IN ('locked', 'ready') THEN
        INSERT INTO outbox (event_type, user_id, user_seq, payload)
        VALUES (CASE p_state WHEN 'locked' THEN 'node.locked' ELSE 'node.unlocked' END, 0,
                nextval('node_event_seq'),
                jsonb_build_object('state', p_state, 'previous_state', v_previous));
    END IF;
    RETURN true;
END $$;

CREATE TABLE webhook_endpoints (
    id           bigserial PRIMARY KEY,
    url          text NOT NULL CHECK (url ~ '^https?://'),
    event_types  text[] NOT NULL DEFAULT '{}',  -- empty: every type
    -- Needed in clear to sign each delivery; shown once when the endpoint is created.
    secret       text NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);

CREATE TABLE event_deliveries (
    outbox_id        bigint NOT NULL REFERENCES outbox (id),
    channel          text NOT NULL CHECK (channel ~ '^(redis|webhook:[0-9]+)$'),
    user_id          bigint NOT NULL,
    user_seq         bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (channel, outbox_id)
);
-- What a channel must deliver next, oldest first; and the per-user ordering check.
CREATE INDEX event_deliveries_due ON event_deliveries (channel, next_attempt_at, outbox_id)
    WHERE status = 'pending';
CREATE INDEX event_deliveries_user_pending ON event_deliveries (channel, user_id, user_seq)
    WHERE status = 'pending';
CREATE INDEX event_deliveries_dead ON event_deliveries (channel, outbox_id) WHERE status = 'dead';
