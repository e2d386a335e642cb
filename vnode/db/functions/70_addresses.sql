-- Lightning Addresses (LUD-16): claiming a name, one current name per user (issue 12, part 2).
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

-- An address as the API shows it (the URLs are added by the service, which knows its host).
CREATE OR REPLACE FUNCTION vnode_address_json(a ln_addresses) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('user_id', a.user_id, 'node_id', 'vn_' || a.user_id::text,
                              'name', a.name, 'claimed_at', vnode_ts(a.claimed_at))
$$;

-- The user behind a name now: its current holder, or the former owner while the name is held
-- for them (held_until), else nobody. The row's id names the address an invoice is made for.
CREATE OR REPLACE FUNCTION vnode_address_resolve(p_name text, OUT address_id bigint,
                                                 OUT user_id bigint)
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.user_id FROM ln_addresses a
    WHERE a.name = p_name AND (a.released_at IS NULL OR a.held_until > now())
    ORDER BY (a.released_at IS NULL) DESC, a.id DESC
    LIMIT 1
$$;

-- p_user claims p_name (already checked against the name rules and reserved words by the
-- caller; the table's CHECK is the backstop). Answers code 'ok' with the address, or
-- 'address_taken' when another user holds the name, currently or within their hold. The user's
-- previous name, if any, is released and held for them for p_hold_s seconds. Claiming the name
-- one already has changes nothing.
--
-- Locks: the user's node row, then the names involved in name order (advisory, per name), so
-- that a claim racing a release of the same name sees it either held or not released.
DROP FUNCTION IF EXISTS vnode_address_claim(bigint, text, integer);
CREATE OR REPLACE FUNCTION vnode_address_claim(
    p_user bigint, p_name text, p_hold_s integer,
    OUT code text, OUT detail text, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_current ln_addresses%ROWTYPE;
    v_row ln_addresses%ROWTYPE;
    v_lock text;
BEGIN
    PERFORM 1 FROM virtual_nodes WHERE user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        code := 'unknown_user';
        RETURN;
    END IF;
    SELECT * INTO v_current FROM ln_addresses WHERE user_id = p_user AND released_at IS NULL;
    IF FOUND AND v_current.name = p_name THEN
        code := 'ok';
        result := vnode_address_json(v_current);
        RETURN;
    END IF;
    FOR v_lock IN SELECT DISTINCT n FROM unnest(ARRAY[p_name, v_current.name]) AS n
                  WHERE n IS NOT NULL ORDER BY n LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('ln_address:' || v_lock, 0));
    END LOOP;
    IF EXISTS (SELECT 1 FROM ln_addresses
               WHERE name = p_name AND user_id <> p_user
                 AND (released_at IS NULL OR held_until > now())) THEN
        code := 'address_taken';
        detail := 'the name ' || p_name || ' is taken';
        RETURN;
    END IF;

    -- Validated; from here on the claim must complete.
    UPDATE ln_addresses SET released_at = now(), held_until = now() + make_interval(secs => p_hold_s)
    WHERE user_id = p_user AND released_at IS NULL;
    -- Taking back a name held for oneself ends that hold: the new row is the current one.
    UPDATE ln_addresses SET held_until = now()
    WHERE name = p_name AND user_id = p_user AND released_at IS NOT NULL AND held_until > now();
    INSERT INTO ln_addresses (name, user_id) VALUES (p_name, p_user) RETURNING * INTO v_row;
    code := 'ok';
    result := vnode_address_json(v_row);
END $$;
