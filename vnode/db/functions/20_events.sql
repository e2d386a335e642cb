-- The transactional outbox: events written in the money transaction.
--
-- The current definition of each object below, and nowhere else (CONTRIBUTING.md, "Database
-- code"). The migrator applies this file after the numbered migrations, again whenever its text
-- changes (its checksum is kept in schema_functions), and again after any numbered migration.
-- Files apply in name order: a file may use what a lower number defines. Change a function
-- here, never in a migration; a migration never calls one.
--
-- Every statement must be safe to run again on a database that already has it:
--   * CREATE OR REPLACE FUNCTION, for a new body, volatility or other attribute.
--   * New argument types make a new function: drop the old one first, by its old types,
--       DROP FUNCTION IF EXISTS vnode_example(bigint, text);
--   * A new return type, OUT parameter or parameter name cannot be replaced: put
--       DROP FUNCTION IF EXISTS vnode_example(bigint, text);
--     right above its CREATE (it is then made anew each time this file is applied).
--   * A trigger: DROP TRIGGER IF EXISTS name ON table; then CREATE TRIGGER.

-- Append an event for one user, with the next number of that user's sequence.
CREATE OR REPLACE FUNCTION vnode_emit(p_user bigint, p_type text, p_payload jsonb) RETURNS void
LANGUAGE sql AS $$
    WITH seq AS (
        UPDATE virtual_nodes SET event_seq = event_seq + 1 WHERE user_id = p_user
        RETURNING event_seq
    )
    INSERT INTO outbox (event_type, user_id, user_seq, payload)
    SELECT p_type, p_user, seq.event_seq, p_payload FROM seq
$$;

-- The node's state as seen by a vnode process; a change is announced once, as node.locked or
-- node.unlocked (user 0, with its own sequence). Returns whether the state changed.
CREATE OR REPLACE FUNCTION vnode_node_state_changed(p_state text) RETURNS boolean
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
